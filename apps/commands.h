/* The subcommands of `lact`. Each takes the words after its name and returns
 * the process exit code: 0 success, 1 failure at run time, 2 bad usage. */
#ifndef LACT_APP_COMMANDS_H
#define LACT_APP_COMMANDS_H

int cmd_version(int argc, char **argv);
int cmd_op(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_lm(int argc, char **argv);

#endif

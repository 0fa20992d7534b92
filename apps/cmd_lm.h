/* The verbs of `lact lm`; same conventions as commands.h. */
#ifndef LACT_APP_CMD_LM_H
#define LACT_APP_CMD_LM_H

int cmd_lm_tokenizer(int argc, char **argv); /* cmd_lm_tokenizer.c */
int cmd_lm_prepare(int argc, char **argv);   /* cmd_lm_prepare.c */
int cmd_lm_train(int argc, char **argv);     /* cmd_lm_train.c */
int cmd_lm_eval(int argc, char **argv);      /* cmd_lm_eval.c */
int cmd_lm_sample(int argc, char **argv);    /* cmd_lm_sample.c */
int cmd_lm_import(int argc, char **argv);    /* cmd_lm_import.c */
int cmd_lm_export(int argc, char **argv);    /* cmd_lm_export.c */
int cmd_lm_loss(int argc, char **argv);      /* cmd_lm_loss.c */

#endif

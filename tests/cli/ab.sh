# scripts/ab: each setting's environment reaches the command, the medians
# are each setting's, and bad arguments or a failing command stop it with
# one line naming them.
set -u
fail() { echo "FAIL: $*" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "ab: python3 not found, skipped"; exit 77; }
ab=${LACT_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}/scripts/ab
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A fake benchmark: its time is AB_MS (default 20), plus the round's count
# of earlier runs in this setting, so the median is the middle run's.
cat >"$tmp/bench" <<'EOS'
#!/usr/bin/env bash
f=$AB_DIR/count.${AB_MS:-20}
n=$(cat "$f" 2>/dev/null || echo 0); echo $((n + 1)) >"$f"
echo "bench header without a time"
echo "ttt forward+backward   $(( ${AB_MS:-20} + n )).250 ms  100.0 TFLOP/s"
EOS
chmod +x "$tmp/bench"
export AB_DIR=$tmp

out=$("$ab" --rounds 3 --set default --set slow=AB_MS=30 -- "$tmp/bench") || fail "ab exited $?: $out"
grep -q "^round 1 default: ttt forward+backward 20.250" <<<"$out" || fail "round 1: $out"
grep -q "^round 2 slow: ttt forward+backward 31.250" <<<"$out" || fail "round 2 order: $out"
grep -qF "| ttt forward+backward | median 21.250 ms (min 20.250, n 3) | median 31.250 ms (min 30.250, n 3) |" \
    <<<"$out" || fail "table: $out"

err=$("$ab" --set only -- "$tmp/bench" 2>&1) && fail "one setting accepted"
grep -q "at least two --set" <<<"$err" || fail "one setting: $err"
err=$("$ab" --set a --set b=NOVALUE -- "$tmp/bench" 2>&1) && fail "bad setting accepted"
grep -q "'NOVALUE' is not ENV=VALUE" <<<"$err" || fail "bad setting: $err"
err=$("$ab" --set a --set b -- false 2>&1) && fail "failing command accepted"
grep -q "setting 'a', round 1: false exited 1" <<<"$err" || fail "failing command: $err"
err=$("$ab" --set a --set b --match nothing -- "$tmp/bench" 2>&1) && fail "no match accepted"
grep -q "no line of the output matched 'nothing'" <<<"$err" || fail "no match: $err"
echo "ab: ok"

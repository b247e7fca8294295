#!/bin/bash
# Read throughput of latest/ .eml files through fresh mounts (warm catalogue)
# against gzip -dc of the data files. Needs a release build.
# usage: bench.sh BIN CORPUS N [env...]
BIN=$1; C=$2; N=$3; shift 3
M=/tmp/cy2bench-m; I=/tmp/cy2bench-idx
mkdir -p $M $I
total=0; bytes=0
for i in $(seq $N); do
  env "$@" $BIN mount -f $C $M --index $I >/dev/null 2>&1 &
  pid=$!
  for k in $(seq 200); do mountpoint -q $M && break; sleep 0.05; done
  s=$(date +%s.%N)
  b=$(find $M/*/latest -name '*.eml' -print0 | xargs -0 cat | wc -c)
  e=$(date +%s.%N)
  total=$(echo "$total + $e - $s" | bc); bytes=$((bytes + b))
  kill -TERM $pid; wait $pid 2>/dev/null
  mountpoint -q $M && fusermount3 -u $M
done
echo "mount: $bytes bytes in $total s => $(echo "$bytes / $total / 1000000" | bc -l | cut -c1-6) MB/s"
s=$(date +%s.%N); gb=0
for i in $(seq $N); do b=$(cat $C/backup/partition/*/*_?????? | gzip -dc | wc -c); gb=$((gb+b)); done
e=$(date +%s.%N)
gt=$(echo "$e - $s" | bc)
echo "gzip -dc: $gb bytes in $gt s => $(echo "$gb / $gt / 1000000" | bc -l | cut -c1-6) MB/s"

#!/bin/sh
# Writes jobs/job-<item>.yaml for each item, from job-tmpl.yaml beside this script:
#   sh examples/job-template/expand.sh && corralctl apply -f jobs/
set -eu
here=$(dirname "$0")
mkdir -p jobs
for i in apple banana cherry; do
  sed "s/\$ITEM/$i/" "$here/job-tmpl.yaml" > "jobs/job-$i.yaml"
done

#!/usr/bin/env bash
# Start a one-machine SLURM (munged, slurmctld, slurmd) from scripts/slurm/single-node.conf, as
# root, where Debian's slurm-wlm and munge packages are installed (.ci/run installs them). Does
# nothing where this machine's SLURM already answers. Used by tests/study/test_slurm_drill.py.
set -euo pipefail
if sinfo -h >/dev/null 2>&1; then exit 0; fi
host=$(hostname -s)
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone obeys OMP_NUM_THREADS, which .ci/run sets to 1
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
sed -e "s/@HOST@/$host/g" -e "s/@CPUS@/$cpus/g" -e "s/@MEMORY_MB@/$memory_mb/g" \
  "$(dirname "$0")/single-node.conf" >/etc/slurm/slurm.conf
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- munged 2>/dev/null || munged --force
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 300); do  # 60 s
  sinfo -h -o %T 2>/dev/null | grep -qE '^idle|^mixed|^allocated' && exit 0
  sleep 0.2
done
echo "error: the one-machine SLURM did not come up; see /var/log/slurm/" >&2
exit 1

"""Resource accounting of one kernel's process tree, read from /proc (Linux; no third-party module).

    meter = TreeMeter(pid)      # the kernel process; its descendants are found at each sample
    meter.sample()              # call every second or so, and once more just before the kernel is shut down
    meter.result()              # {'cpu_s', 'cpu_user_s', 'cpu_sys_s', 'peak_rss_mb', 'processes', 'samples'}

CPU seconds are user + system time of the kernel and all its descendants, the way `/usr/bin/time` counts a command:
at each sample the tree's total is  Σ over its live processes of (utime + stime + cutime + cstime)  from
/proc/<pid>/stat, where cutime/cstime hold the time of children a process has already waited for. A child's time
moves into its parent's cutime when it is reaped, so the total does not drop when workers come and go; the result is
the largest total seen (a descendant that outlives its parent and is adopted by init is counted up to its last
sample). Peak RSS is the larger of the tree's summed resident memory at any sample and the kernel's own high-water
mark (VmHWM, exact); memory peaks between samples of short-lived children are missed.

Where /proc is missing (macOS, Windows) every figure is None: the runner still reports wall time and load.
"""
import os

try:
    CLK_TCK = os.sysconf('SC_CLK_TCK')
    PAGE = os.sysconf('SC_PAGE_SIZE')
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    CLK_TCK, PAGE = 100, 4096

HAVE_PROC = os.path.isfile('/proc/self/stat')


def read_stat(pid):
    """(ppid, user ticks, sys ticks, rss bytes) of one process from /proc/<pid>/stat (None if it is gone).
    user/sys include the waited-for children (cutime/cstime)."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            data = f.read().decode('ascii', 'replace')
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    rest = data[data.rfind(')') + 2:].split()
    # rest[0] is field 3 (state): field k is rest[k - 3]
    try:
        ppid = int(rest[1])
        utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
        rss = int(rest[21]) * PAGE
    except (IndexError, ValueError):
        return None
    return ppid, utime + cutime, stime + cstime, rss


def hwm_bytes(pid):
    """The process's peak resident set (VmHWM in /proc/<pid>/status), or 0."""
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def process_tree(root):
    """{pid: stat} of `root` and its live descendants."""
    stats = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            s = read_stat(int(name))
            if s is not None:
                stats[int(name)] = s
    if root not in stats:
        return {}
    children = {}
    for pid, s in stats.items():
        children.setdefault(s[0], []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree[pid] = stats[pid]
        todo.extend(children.get(pid, []))
    return tree


class TreeMeter:
    """CPU and memory of a process and its descendants, sampled (see the module's doc)."""

    def __init__(self, pid):
        self.pid = pid
        self.cpu = None  # (user ticks, sys ticks) at the largest total seen
        self.peak_rss = 0
        self.hwm = 0
        self.seen = set()
        self.samples = 0

    def sample(self):
        if not HAVE_PROC or self.pid is None:
            return
        tree = process_tree(self.pid)
        if not tree:
            return
        user = sum(s[1] for s in tree.values())
        sys_ = sum(s[2] for s in tree.values())
        if self.cpu is None or user + sys_ >= sum(self.cpu):
            self.cpu = (user, sys_)
        self.peak_rss = max(self.peak_rss, sum(s[3] for s in tree.values()))
        self.hwm = max(self.hwm, hwm_bytes(self.pid))
        self.seen.update(tree)
        self.samples += 1

    def result(self):
        if self.cpu is None:
            return {'cpu_s': None, 'cpu_user_s': None, 'cpu_sys_s': None, 'peak_rss_mb': None, 'processes': None, 'samples': self.samples}
        user, sys_ = (t / CLK_TCK for t in self.cpu)
        return {
            'cpu_s': round(user + sys_, 2),
            'cpu_user_s': round(user, 2),
            'cpu_sys_s': round(sys_, 2),
            'peak_rss_mb': round(max(self.peak_rss, self.hwm) / 2 ** 20, 1),
            'processes': len(self.seen),
            'samples': self.samples,
        }

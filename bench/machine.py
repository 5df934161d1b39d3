"""The machine a benchmark ran on, in one line, for its report (bench/harness.py and the
scripts that import it, and bench/scaling.py, which runs from its kit without the
repository: the kit carries this file)."""

import os
import platform


def os_release():
    """The distribution's name, e.g. `Debian GNU/Linux 12 (bookworm)`."""
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def machine():
    """Cores, CPU model, memory, distribution and kernel."""
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem = int(open("/proc/meminfo").readline().split()[1]) / 2**20
    except OSError:
        mem = 0
    return f"{os.cpu_count()} cores, {model}, {mem:.0f} GiB, {os_release()}, Linux {platform.release()}"

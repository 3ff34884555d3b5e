#!/usr/bin/env python3
"""bench/sync: vigie's live replication beside lsyncd 2.2 + rsync (Debian),
one after the other, against the same real sshd on loopback. Prints one
table. Run through bench/sync (it builds vigie and installs what is
missing). Needs root (nftables byte counters on the sshd port)."""

import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

VIGIE = os.path.abspath(sys.argv[1])
TRIALS = int(os.environ.get("TRIALS", "20"))
BIG_MB = int(os.environ.get("BIG_MB", "1024"))
# ONLY=initial: just the initial copies.
ONLY = os.environ.get("ONLY", "")
ROUNDS = int(os.environ.get("ROUNDS", "3"))
WORK = tempfile.mkdtemp(prefix="vigie-bench-sync-")
PROCS = []


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def cleanup():
    if os.path.ismount(os.path.join(WORK, "fs")):
        subprocess.run(["umount", os.path.join(WORK, "fs")], capture_output=True)
    for p in PROCS:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=5)
        except Exception:
            p.kill()
    subprocess.run(["nft", "delete", "table", "inet", "vbench"], capture_output=True)
    shutil.rmtree(WORK, ignore_errors=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- a real sshd on loopback, and an ssh_config naming it "bench" ---------
def start_sshd():
    d = os.path.join(WORK, "ssh")
    os.makedirs(d, mode=0o700)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/host_key")
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/id")
    shutil.copy(f"{d}/id.pub", f"{d}/authorized_keys")
    port = free_port()
    os.makedirs("/run/sshd", exist_ok=True)
    with open(f"{d}/sshd_config", "w") as f:
        f.write(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
            f"PidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PasswordAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 100\n"
        )
    p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"],
                         stderr=subprocess.DEVNULL)
    PROCS.append(p)
    host_key = open(f"{d}/host_key.pub").read().strip()
    with open(f"{d}/known_hosts", "w") as f:
        f.write(f"[127.0.0.1]:{port} {host_key}\n")
    cfg = f"{d}/ssh_config"
    with open(cfg, "w") as f:
        f.write(
            f"Host bench\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
            f"  IdentityFile {d}/id\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n  ControlMaster no\n"
        )
    for _ in range(100):
        if subprocess.run(["ssh", "-F", cfg, "bench", "true"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    # Count the bytes sent to sshd (client → server) on loopback.
    subprocess.run(["nft", "delete", "table", "inet", "vbench"], capture_output=True)
    sh("nft", "add", "table", "inet", "vbench")
    sh("nft", "add", "chain", "inet", "vbench", "out",
       "{ type filter hook output priority 0; policy accept; }")
    sh("nft", "add", "rule", "inet", "vbench", "out", "tcp", "dport", str(port), "counter")
    return cfg


def wire_bytes():
    out = subprocess.run(["nft", "-j", "list", "table", "inet", "vbench"],
                         capture_output=True, text=True, check=True).stdout
    for item in json.loads(out)["nftables"]:
        rule = item.get("rule")
        if rule:
            for e in rule["expr"]:
                if "counter" in e:
                    return e["counter"]["bytes"]
    return 0


def wait_for(cond, limit=600.0, step=0.002):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > limit:
            raise RuntimeError("timed out")
        time.sleep(step)
    return time.monotonic() - t0


def size_is(path, n):
    try:
        return os.path.getsize(path) == n
    except OSError:
        return False


# --- the tools ------------------------------------------------------------
class Vigie:
    name = "vigie"

    def __init__(self, cfg, src, dst, delay="250ms"):
        self.dir = tempfile.mkdtemp(dir=WORK)
        self.conf = os.path.join(self.dir, "vigie.toml")
        with open(self.conf, "w") as f:
            f.write(
                f'[[sync]]\nname = "bench"\nfrom = "{src}"\nto = "bench:{dst}"\n'
                f'delay = "{delay}"\nssh = ["ssh", "-F", "{cfg}"]\nremote_vigie = "{VIGIE}"\n'
            )
        self.env = dict(os.environ, VIGIE_CONFIG=self.conf,
                        VIGIE_STATE_DIR=os.path.join(self.dir, "state"), VIGIE_LOG="warn")

    def start(self):
        self.p = subprocess.Popen([VIGIE, "sync", "bench"], env=self.env,
                                  stderr=open(os.path.join(self.dir, "log"), "w"))
        PROCS.append(self.p)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()

    def once(self):
        sh(VIGIE, "sync", "bench", "--once", env=self.env, capture_output=True)


class Lsyncd:
    def __init__(self, cfg, src, dst, delay):
        self.name = f"lsyncd delay={delay}"
        self.dir = tempfile.mkdtemp(dir=WORK)
        self.conf = os.path.join(self.dir, "lsyncd.lua")
        rsh = f"/usr/bin/ssh -F {cfg}"
        with open(self.conf, "w") as f:
            f.write(
                "settings { nodaemon = true, insist = true, "
                f'logfile = "{self.dir}/log", statusFile = "{self.dir}/status" }}\n'
                "sync { default.rsyncssh, "
                f'source = "{src}", host = "bench", targetdir = "{dst}", delay = {delay}, '
                f'rsync = {{ rsh = "{rsh}", archive = true }}, '
                f'ssh = {{ _extra = {{ "-F", "{cfg}" }} }} }}\n'
            )

    def start(self):
        self.p = subprocess.Popen(["lsyncd", self.conf], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        PROCS.append(self.p)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait()


def fresh(name):
    src = os.path.join(WORK, name, "src")
    dst = os.path.join(WORK, name, "dst")
    os.makedirs(src)
    os.makedirs(dst)
    return src, dst


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def single_changes(src, dst, trials):
    lat = []
    for i in range(trials):
        p = os.path.join(src, f"single-{i}")
        t0 = time.monotonic()
        with open(p, "wb") as f:
            f.write(os.urandom(1024))
        wait_for(lambda: size_is(os.path.join(dst, f"single-{i}"), 1024), limit=120)
        lat.append(time.monotonic() - t0)
        time.sleep(0.2)
    return lat


def burst(src, dst):
    d = os.path.join(src, "burst")
    t0 = time.monotonic()
    os.makedirs(d)
    for i in range(1000):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(b"x" * 512)
    wait_for(lambda: os.path.isdir(os.path.join(dst, "burst"))
             and len(os.listdir(os.path.join(dst, "burst"))) == 1000
             and size_is(os.path.join(dst, "burst", "f999"), 512), limit=300, step=0.01)
    return time.monotonic() - t0


def big_file(src, dst):
    p = os.path.join(src, "hundred.bin")
    with open(p, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    t0 = time.monotonic()
    wait_for(lambda: size_is(os.path.join(dst, "hundred.bin"), 100 << 20), limit=300, step=0.01)
    return time.monotonic() - t0


def block_change(src, dst, tool):
    """A 1 GiB file, synced; then one 4 KiB block changes: bytes sent."""
    p = os.path.join(src, "disk.img")
    size = BIG_MB << 20
    with open(p, "wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(BIG_MB):
            f.write(chunk[i % 7:] + chunk[:i % 7])
    wait_for(lambda: size_is(os.path.join(dst, "disk.img"), size), limit=1200, step=0.05)
    time.sleep(2)
    before = wire_bytes()
    marker = b"vigie-bench-marker" * 200
    with open(p, "r+b") as f:
        f.seek(size // 2)
        f.write(marker)
    t0 = time.monotonic()

    def arrived():
        try:
            with open(os.path.join(dst, "disk.img"), "rb") as f:
                f.seek(size // 2)
                return f.read(len(marker)) == marker
        except OSError:
            return False
    wait_for(arrived, limit=1200, step=0.02)
    took = time.monotonic() - t0
    time.sleep(1)
    return wire_bytes() - before, took


def rename_dir(src, dst):
    d = os.path.join(src, "tree")
    os.makedirs(d)
    for i in range(1000):
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(os.urandom(2048))
    wait_for(lambda: os.path.isdir(os.path.join(dst, "tree"))
             and len(os.listdir(os.path.join(dst, "tree"))) == 1000, limit=300, step=0.01)
    time.sleep(2)
    before = wire_bytes()
    t0 = time.monotonic()
    os.rename(d, os.path.join(src, "moved"))
    wait_for(lambda: os.path.isdir(os.path.join(dst, "moved"))
             and len(os.listdir(os.path.join(dst, "moved"))) == 1000
             and not os.path.exists(os.path.join(dst, "tree")), limit=300, step=0.01)
    took = time.monotonic() - t0
    time.sleep(1)
    return wire_bytes() - before, took


def initial_source():
    src = os.path.join(WORK, "initial-src")
    for i in range(100):
        d = os.path.join(src, f"d{i}")
        os.makedirs(d)
        for j in range(100):
            with open(os.path.join(d, f"f{j}"), "wb") as f:
                f.write(os.urandom(10 * 1024))
    return src


def fresh_fs():
    """A new ext4 filesystem on an image file on this disk, for the copies:
    ext4 skips inodes freed in the last minute or more (reading each
    one's inode block) when it allocates, so on a filesystem where trees
    were just deleted, creating 10,000 files costs several times more,
    whoever comes first. Nothing is ever deleted on this one."""
    img, mnt = os.path.join(WORK, "fs.img"), os.path.join(WORK, "fs")
    os.makedirs(mnt)
    with open(img, "wb") as f:
        f.truncate(4 << 30)
    sh("mkfs.ext4", "-q", "-F", img)
    sh("mount", "-o", "loop", img, mnt)
    return mnt


def initial_copy(cfg, fs, src, tool, n):
    dst = os.path.join(fs, f"initial-{tool.replace(' ', '')}-{n}")
    os.makedirs(dst)
    os.sync()  # nobody else's writes are waiting
    t0 = time.monotonic()
    if tool == "vigie":
        Vigie(cfg, src, dst).once()
    elif tool == "rsync --fsync":
        sh("rsync", "-a", "--fsync", "-e", f"ssh -F {cfg}", f"{src}/", f"bench:{dst}/")
    else:
        sh("rsync", "-a", "-e", f"ssh -F {cfg}", f"{src}/", f"bench:{dst}/")
    took = time.monotonic() - t0
    assert len(os.listdir(os.path.join(dst, "d99"))) == 100
    return took


def run_live(tool_factory, name, cfg, trials, heavy=True):
    src, dst = fresh(name)
    tool = tool_factory(cfg, src, dst)
    tool.start()
    time.sleep(3)
    r = {"single": single_changes(src, dst, trials)}
    if heavy:
        r["burst"] = burst(src, dst)
        r["big"] = big_file(src, dst)
        r["rename"] = rename_dir(src, dst)
        r["block"] = block_change(src, dst, tool)
    tool.stop()
    return r


def main():
    try:
        cfg = start_sshd()
        results = {}
        if ONLY != "initial":
            print("vigie ...", file=sys.stderr)
            results["vigie"] = run_live(lambda c, s, d: Vigie(c, s, d), "vigie", cfg, TRIALS)
            print("lsyncd delay=1 ...", file=sys.stderr)
            results["lsyncd delay=1"] = run_live(lambda c, s, d: Lsyncd(c, s, d, 1), "lsyncd1", cfg, TRIALS)
            print("lsyncd default delay (15) ...", file=sys.stderr)
            results["lsyncd delay=15 (default)"] = run_live(
                lambda c, s, d: Lsyncd(c, s, d, 15), "lsyncd15", cfg, max(3, TRIALS // 5), heavy=False)
        print("initial copies ...", file=sys.stderr)
        # One source for all, copies onto a fresh filesystem (see
        # fresh_fs), alternated, best of ROUNDS each.
        src = initial_source()
        fs = fresh_fs()
        init = {}
        for n in range(ROUNDS):
            for tool in ("rsync", "vigie", "rsync --fsync"):
                t = initial_copy(cfg, fs, src, tool, n)
                init[tool] = min(init.get(tool, t), t)

        def ms(x):
            return f"{x * 1000:.0f}"

        if results:
            print(f"\nreplication over a real sshd on loopback (this machine), {TRIALS} single changes\n")
            print("| tool | 1 KB change p50 ms | p95 ms | max ms | 1,000 files s | 100 MB file s | 1-block change in "
                  f"{BIG_MB} MiB: bytes sent | s | rename of 1,000 files: bytes sent | s |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, r in results.items():
            s = r["single"]
            row = [name, ms(statistics.median(s)), ms(pct(s, 0.95)), ms(max(s))]
            if "burst" in r:
                row += [f"{r['burst']:.2f}", f"{r['big']:.2f}", f"{r['block'][0]:,}",
                        f"{r['block'][1]:.2f}", f"{r['rename'][0]:,}", f"{r['rename'][1]:.2f}"]
            else:
                row += ["-"] * 6
            print("| " + " | ".join(row) + " |")
        print("\ninitial copy of 10,000 × 10 KB files over the same ssh\n")
        print("| tool | seconds |\n|---|---:|")
        print(f"| vigie sync --once (every file synced to disk before it is renamed in) | {init['vigie']:.2f} |")
        print(f"| rsync -a (no sync to disk) | {init['rsync']:.2f} |")
        print(f"| rsync -a --fsync | {init['rsync --fsync']:.2f} |")
    finally:
        cleanup()


if __name__ == "__main__":
    main()

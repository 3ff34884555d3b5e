#!/usr/bin/env python3
"""bench/backup: vigie's backups beside restic and borg (Debian's) on the
same generated data set, each into a repository of its own on the same
disk. Step by step, the tools take turns (so a machine that gets busier
midway weighs on all of them alike); the short steps (nothing changed,
1 % changed) run ROUNDS times, each 1 % round on a fresh change, and
their median is shown with the range. Prints one table: wall time and
peak RSS of each step. Run through bench/backup (it builds vigie and
installs what is missing). As root, the page cache is dropped before
every step (cold cache); otherwise the table says it was warm."""

import os
import random
import shutil
import subprocess
import sys
import tempfile

VIGIE = os.path.abspath(sys.argv[1])
SIZE_MB = int(os.environ.get("SIZE_MB", "2048"))
DUMP_MB = int(os.environ.get("DUMP_MB", "200"))
ROUNDS = max(1, int(os.environ.get("ROUNDS", "3")))
WORK = os.environ.get("WORK") or tempfile.mkdtemp(prefix="vigie-bench-backup-", dir="/var/tmp")
DATA = os.path.join(WORK, "data")
DUMP = os.path.join(WORK, "dump.sql")
PASSWORD = "bench password"
COLD = os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)
ENV = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD,
           BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
           BORG_RELOCATED_REPO_ACCESS_IS_OK="yes", RESTIC_CACHE_DIR=os.path.join(WORK, "restic-cache"),
           BORG_BASE_DIR=os.path.join(WORK, "borg-base"), VIGIE_RUNTIME_DIR=os.path.join(WORK, "run"))
ENV.pop("RESTIC_REPOSITORY", None)


def words(rng, n):
    vocab = ("insert into posts values select from where update set id title body author "
             "created 2024 the a of and to in is for on with as by at it this that be "
             "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod").split()
    return " ".join(rng.choice(vocab) for _ in range(n))


def generate():
    """About SIZE_MB: 60 % in small and medium text-like files (they
    compress), 40 % in a few large random files (media: they do not)."""
    if os.path.exists(os.path.join(WORK, "generated")):
        return
    rng = random.Random(42)
    os.makedirs(DATA, exist_ok=True)
    block = (words(rng, 300_000) + "\n").encode()
    text_bytes = SIZE_MB * 1024 * 1024 * 6 // 10
    written, n = 0, 0
    while written < text_bytes:
        size = min(rng.choice([2_000, 8_000, 30_000, 120_000, 400_000]), text_bytes - written)
        start = rng.randrange(0, len(block) - size)
        d = os.path.join(DATA, "site", f"{n // 500:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"page-{n}.html"), "wb") as f:
            f.write(f"<!-- {n} -->\n".encode() + block[start:start + size])
        written += size
        n += 1
    media = SIZE_MB * 1024 * 1024 - written
    big = 8
    os.makedirs(os.path.join(DATA, "media"), exist_ok=True)
    for i in range(big):
        with open(os.path.join(DATA, "media", f"video-{i}.bin"), "wb") as f:
            left = media // big
            while left > 0:
                chunk = min(left, 16 << 20)
                f.write(os.urandom(chunk))
                left -= chunk
    with open(DUMP, "wb") as f:
        line = 0
        while f.tell() < DUMP_MB * 1024 * 1024:
            f.write(f"INSERT INTO posts VALUES ({line}, '{words(rng, 12)}');\n".encode())
            line += 1
    open(os.path.join(WORK, "generated"), "w").close()


def change_one_percent(round_no=0):
    """Rewrites files (new bytes, same sizes) until 1 % of the data set
    changed: mostly pages, and 1 MiB inside one video. Each round
    changes other files (its own seed)."""
    rng = random.Random(7 + round_no)
    pages = sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(DATA, "site")) for f in fs)
    target = SIZE_MB * 1024 * 1024 // 100
    changed = 0
    for path in rng.sample(pages, len(pages)):
        if changed >= target - (1 << 20):
            break
        size = os.path.getsize(path)
        with open(path, "wb") as f:
            f.write((words(rng, size // 5 + 1) * 2).encode()[:size])
        changed += size
    with open(os.path.join(DATA, "media", f"video-{round_no % 8}.bin"), "r+b") as f:
        f.seek(os.path.getsize(f.name) // 2)
        f.write(os.urandom(1 << 20))


def drop_caches():
    if COLD:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def timed(cmd, cwd=None):
    """(wall seconds, peak RSS MiB) of a shell command line, cache
    dropped first; the peak is of the largest process it ran."""
    drop_caches()
    out = os.path.join(WORK, "time.out")
    r = subprocess.run(["/usr/bin/time", "-o", out, "-f", "%e %M", "sh", "-c", cmd],
                       cwd=cwd, env=ENV, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    wall, rss = open(out).read().split()[-2:]
    return float(wall), int(rss) / 1024


def q(path):
    return "'" + path.replace("'", "'\\''") + "'"


def version(cmd, word):
    out = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
    return out[word] if len(out) > word else "?"


class Restic:
    def __init__(self):
        self.name = "restic " + version(["restic", "version"], 1)
        self.repo = os.path.join(WORK, "restic-repo")

    def r(self, args):
        return f"restic -r {q(self.repo)} --quiet {args}"

    def init(self):
        subprocess.run(self.r("init"), shell=True, env=ENV, check=True, capture_output=True)

    def backup(self):
        return self.r(f"backup {q(DATA)}")

    def dump(self):
        return f"cat {q(DUMP)} | " + self.r("backup --stdin --stdin-filename dump.sql")

    def restore(self, target):
        return self.r(f"restore latest --path {q(DATA)} --target {q(target)}")

    def check(self):
        return self.r("check --read-data")


class Borg:
    def __init__(self):
        self.name = "borg " + version(["borg", "--version"], 1)
        self.repo = os.path.join(WORK, "borg-repo")
        self.n = 0

    def init(self):
        subprocess.run(["borg", "init", "--encryption=repokey-blake2", self.repo], env=ENV,
                       check=True, capture_output=True)

    def backup(self):
        self.n += 1
        return f"borg create --compression lz4 {q(self.repo)}::b{self.n} {q(DATA)}"

    def dump(self):
        return f"cat {q(DUMP)} | borg create --compression lz4 --stdin-name dump.sql {q(self.repo)}::dump -"

    def restore(self, target):
        os.makedirs(target, exist_ok=True)
        return f"cd {q(target)} && borg extract {q(self.repo)}::b{self.n}"

    def check(self):
        return f"borg check --verify-data {q(self.repo)}"


class Vigie:
    def __init__(self):
        self.name = "vigie " + version([VIGIE, "--version"], 1)
        self.repo = os.path.join(WORK, "vigie-repo")
        self.conf = os.path.join(WORK, "vigie.toml")
        with open(os.path.join(WORK, "password"), "w") as f:
            f.write(PASSWORD + "\n")
        with open(self.conf, "w") as f:
            f.write(f"""
[[backup]]
name = "bench"
repository = "{self.repo}"
password = {{ file = "{WORK}/password" }}
paths = ["{DATA}"]
at = "03:00"

[[backup]]
name = "dump"
repository = "{self.repo}"
password = {{ file = "{WORK}/password" }}
paths = []
dump = [{{ name = "dump.sql", run = ["cat", "{DUMP}"] }}]
at = "04:00"
""")

    def v(self, args):
        return f"{q(VIGIE)} -c {q(self.conf)} --state-dir {q(os.path.join(WORK, 'vigie-state'))} {args}"

    def init(self):
        subprocess.run(self.v("backup init bench"), shell=True, env=ENV, check=True, capture_output=True)

    def backup(self):
        return self.v("backup run bench")

    def dump(self):
        return self.v("backup run dump")

    def restore(self, target):
        return self.v(f"backup restore bench --to {q(target)}")

    def check(self):
        return self.v("backup check bench --read-data")


def median_of(runs):
    """(median wall, peak RSS of that run, min wall, max wall)."""
    walls = sorted(runs)
    mid = walls[len(walls) // 2]
    return mid[0], mid[1], walls[0][0], walls[-1][0]


def main():
    for tool in ("restic", "borg"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install {'borgbackup' if tool == 'borg' else tool}")
    print(f"data set: {SIZE_MB} MiB in {WORK} ({'cold' if COLD else 'warm'} cache)", file=sys.stderr)
    generate()
    steps = ["first backup", "no-change backup", "1 % changed", f"{DUMP_MB} MiB dump", "restore",
             "check --read-data"]
    tools = [Vigie(), Restic(), Borg()]
    results = {t.name: {s: [] for s in steps} for t in tools}
    # Every run starts from the same tree: the 1 % changes are made on
    # a copy of the pristine one.
    snapshot = os.path.join(WORK, "pristine")
    if not os.path.exists(snapshot):
        shutil.copytree(DATA, snapshot, copy_function=os.link)
    shutil.rmtree(DATA)
    shutil.copytree(snapshot, DATA)
    for tool in tools:
        shutil.rmtree(tool.repo, ignore_errors=True)
        tool.init()

    def each(step, command):
        for tool in tools:
            print(f"{step}: {tool.name}...", file=sys.stderr)
            results[tool.name][step].append(timed(command(tool)))

    each("first backup", lambda t: t.backup())
    for _ in range(ROUNDS):
        each("no-change backup", lambda t: t.backup())
    for r in range(ROUNDS):
        change_one_percent(r)
        each("1 % changed", lambda t: t.backup())
    each(f"{DUMP_MB} MiB dump", lambda t: t.dump())
    target = os.path.join(WORK, "restored")
    for tool in tools:
        shutil.rmtree(target, ignore_errors=True)
        print(f"restore: {tool.name}...", file=sys.stderr)
        results[tool.name]["restore"].append(timed(tool.restore(target)))
    shutil.rmtree(target, ignore_errors=True)
    each("check --read-data", lambda t: t.check())
    sizes = {t.name: subprocess.run(["du", "-sm", t.repo], capture_output=True, text=True).stdout.split()[0]
             for t in tools}
    names = [t.name for t in tools]
    print(f"\n{SIZE_MB} MiB data set, {'cold' if COLD else 'warm'} cache: wall seconds / peak RSS MiB"
          f" (steps run {ROUNDS} times: median, then min–max)\n")
    print("| step | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for step in steps:
        cells = []
        for n in names:
            wall, rss, lo, hi = median_of(results[n][step])
            spread = f" ({lo:.2f}–{hi:.2f})" if len(results[n][step]) > 1 else ""
            cells.append(f"{wall:.2f} s{spread} / {rss:.0f}")
        print(f"| {step} | " + " | ".join(cells) + " |")
    print("| repository size MiB | " + " | ".join(sizes[n] for n in names) + " |")


if __name__ == "__main__":
    main()

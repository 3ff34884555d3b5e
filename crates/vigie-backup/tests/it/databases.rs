//! Dumps of real databases: a throwaway PostgreSQL cluster and MariaDB
//! server, each on a Unix socket in a temporary directory (no TCP),
//! dumped by their own tools into a snapshot, and the dump restored by
//! restic imported again into a second database.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vigie_backup::{Dump, Request};
use vigie_testkit::need::{Need, postgres_bin};
use vigie_testkit::require;

use crate::util::{PASSWORD, Place};

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// A directory the database's user may enter: 0755, its `data` owned by
/// that user.
fn server_dir(user: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let ids = Command::new("id").args(["-u", user]).output().unwrap();
    let uid: u32 = ok(&ids, "id -u").trim().parse().unwrap();
    let ids = Command::new("id").args(["-g", user]).output().unwrap();
    let gid: u32 = ok(&ids, "id -g").trim().parse().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::chown(&data, Some(uid), Some(gid)).unwrap();
    (dir, data)
}

/// `program ARGS` as user `postgres`.
fn as_postgres(program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program)
    .stdin(Stdio::null());
    cmd
}

/// A PostgreSQL cluster stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    data: PathBuf,
}

impl Postgres {
    fn start() -> Postgres {
        let (dir, data) = server_dir("postgres");
        let init = as_postgres(&postgres_bin("initdb").unwrap())
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "--no-sync"])
            .output()
            .unwrap();
        ok(&init, "initdb");
        let options = format!(
            "-k {} -p 5433 -c listen_addresses='' -c fsync=off",
            dir.path().display()
        );
        let start = as_postgres(&postgres_bin("pg_ctl").unwrap())
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-w", "-t", "60", "-l"])
            .arg(dir.path().join("log"))
            .arg("start")
            .output()
            .unwrap();
        ok(&start, "pg_ctl start");
        Postgres { dir, data }
    }

    fn socket_args(&self) -> Vec<String> {
        vec![
            "-h".to_owned(),
            self.dir.path().to_str().unwrap().to_owned(),
            "-p".to_owned(),
            "5433".to_owned(),
            "-U".to_owned(),
            "postgres".to_owned(),
        ]
    }

    /// `psql -d DB -tA -c SQL`'s output.
    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(self.socket_args())
            .args(["-d", db, "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(&out, sql)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pg_ctl) = postgres_bin("pg_ctl") {
            let _ = as_postgres(&pg_ctl)
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

#[test]
fn a_postgresql_dump_restored_by_restic_loads_into_a_new_database() {
    require!(Need::Restic, Need::Postgres);
    let pg = Postgres::start();
    pg.psql("postgres", "CREATE DATABASE blog");
    pg.psql(
        "blog",
        "CREATE TABLE posts (id int PRIMARY KEY, body text); \
         INSERT INTO posts SELECT i, repeat(md5(i::text), 20) FROM generate_series(1, 20000) i",
    );
    let want = pg.psql(
        "blog",
        "SELECT count(*), md5(string_agg(body, ',' ORDER BY id)) FROM posts",
    );

    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let mut run = vec!["pg_dump".to_owned(), "-Fc".to_owned()];
    run.extend(pg.socket_args());
    run.push("blog".to_owned());
    let summary = repo
        .backup(&Request {
            dumps: vec![Dump::new("blog.pgdump", &run)],
            ..Request::default()
        })
        .unwrap();
    assert!(summary.bytes_processed > 0, "{summary:?}");
    place.restic_check();

    let target = place.path("restored");
    place.restic(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let file = target.join("blog.pgdump");
    let listed = Command::new("pg_restore")
        .arg("--list")
        .arg(&file)
        .output()
        .unwrap();
    let listed = ok(&listed, "pg_restore --list");
    assert!(listed.contains("TABLE public posts"), "{listed}");
    pg.psql("postgres", "CREATE DATABASE blog2");
    let loaded = Command::new("pg_restore")
        .args(pg.socket_args())
        .args(["-d", "blog2", "--exit-on-error"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&loaded, "pg_restore");
    let got = pg.psql(
        "blog2",
        "SELECT count(*), md5(string_agg(body, ',' ORDER BY id)) FROM posts",
    );
    assert_eq!(got, want);
    assert!(got.starts_with("20000|"), "{got}");

    // The server gone, pg_dump fails: an error, no second snapshot.
    drop(pg);
    let err = repo
        .backup(&Request {
            dumps: vec![Dump::new("blog.pgdump", &run)],
            ..Request::default()
        })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exited with status 1"), "{text}");
    assert!(text.contains("pg_dump"), "{text}");
    assert_eq!(place.restic_snapshots().len(), 1);
}

/// A MariaDB server killed when dropped.
struct Mariadb {
    dir: tempfile::TempDir,
    server: Child,
}

impl Mariadb {
    fn start() -> Mariadb {
        let (dir, data) = server_dir("mysql");
        let install = Command::new("mariadb-install-db")
            .args(["--user=mysql", "--auth-root-authentication-method=normal"])
            .args(["--skip-test-db", "--no-defaults"])
            .arg(format!("--datadir={}", data.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(&install, "mariadb-install-db");
        let mariadbd = ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        let server = Command::new(mariadbd)
            .args(["--no-defaults", "--user=mysql", "--skip-networking"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!("--log-error={}", dir.path().join("err").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let db = Mariadb { dir, server };
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let ping = Command::new("mariadb-admin")
                .args(db.socket_args())
                .arg("ping")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if ping.status.success() {
                return db;
            }
            let log = std::fs::read_to_string(db.dir.path().join("err")).unwrap_or_default();
            assert!(Instant::now() < deadline, "mariadbd did not start:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn socket_args(&self) -> Vec<String> {
        vec![
            "--no-defaults".to_owned(),
            format!("--socket={}", self.dir.path().join("sock").display()),
            "--user=root".to_owned(),
        ]
    }

    fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("mariadb")
            .args(self.socket_args())
            .args(["--batch", "--skip-column-names", "-e", sql, db])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(&out, sql)
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_mariadb_dump_restored_by_restic_loads_into_a_new_database() {
    require!(Need::Restic, Need::Mariadb);
    let db = Mariadb::start();
    db.sql("mysql", "CREATE DATABASE blog");
    db.sql(
        "blog",
        "CREATE TABLE posts (id INT PRIMARY KEY, body TEXT); \
         INSERT INTO posts SELECT seq, REPEAT(MD5(seq), 20) FROM seq_1_to_20000",
    );
    let checksum = "SELECT COUNT(*), MD5(GROUP_CONCAT(body ORDER BY id SEPARATOR ',')) FROM posts";
    let want = db.sql(
        "blog",
        &format!("SET SESSION group_concat_max_len = 1073741824; {checksum}"),
    );

    let place = Place::new();
    let repo = vigie_backup::init(&place.spec(), PASSWORD).unwrap();
    let mut run = vec!["mariadb-dump".to_owned()];
    run.extend(db.socket_args());
    run.extend(["--single-transaction".to_owned(), "blog".to_owned()]);
    repo.backup(&Request {
        dumps: vec![Dump::new("blog.sql", &run)],
        ..Request::default()
    })
    .unwrap();
    place.restic_check();

    let sql = place.restic(&["dump", "latest", "/blog.sql"]);
    assert!(
        sql.contains("CREATE TABLE `posts`"),
        "{}",
        &sql[..sql.len().min(2000)]
    );
    db.sql("mysql", "CREATE DATABASE blog2");
    let mut load = Command::new("mariadb")
        .args(db.socket_args())
        .arg("blog2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut load.stdin.take().unwrap(), sql.as_bytes()).unwrap();
    ok(&load.wait_with_output().unwrap(), "mariadb < blog.sql");
    let got = db.sql(
        "blog2",
        &format!("SET SESSION group_concat_max_len = 1073741824; {checksum}"),
    );
    assert_eq!(got, want);
    assert!(got.starts_with("20000\t"), "{got}");
}

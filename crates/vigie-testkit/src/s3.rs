//! An S3-compatible server on a loopback port: moto's (PyPI), started by
//! a test. With `auth`, it checks every request's Signature Version 4
//! against an access key the harness creates through moto's IAM API
//! (moto answers its first few requests without a signature, which that
//! set-up uses); without, it takes any key (restic's listings, which
//! moto's check gets wrong, need that). Tests `require!(Need::Moto)`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::KillOnDrop;

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

/// The requests moto serves unsigned when `auth` is on: the harness's
/// IAM set-up, exactly.
const SETUP_REQUESTS: &str = "4";

const SETUP: &str = r#"
import boto3, json, sys
iam = boto3.client("iam", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id="setup", aws_secret_access_key="setup")
iam.create_user(UserName="vigie")
policy = iam.create_policy(PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
iam.attach_user_policy(UserName="vigie", PolicyArn=policy["Policy"]["Arn"])
key = iam.create_access_key(UserName="vigie")["AccessKey"]
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

impl S3Server {
    /// Starts moto's server; with `auth`, requests must be signed with
    /// the returned key.
    pub fn start(auth: bool) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS);
        }
        let child = KillOnDrop::spawn_logging(&mut cmd, &dir.path().join("moto.log"), "moto");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start: {}",
                std::fs::read_to_string(dir.path().join("moto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (access_key_id, secret_access_key) = if auth {
            let out = Command::new("python3")
                .args(["-c", SETUP, &endpoint])
                .output()
                .expect("python3");
            assert!(
                out.status.success(),
                "moto's IAM set-up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8(out.stdout).expect("utf-8");
            let mut it = text.split_whitespace().map(str::to_owned);
            (it.next().expect("a key id"), it.next().expect("a secret"))
        } else {
            ("any".to_owned(), "any-secret".to_owned())
        };
        S3Server {
            endpoint,
            access_key_id,
            secret_access_key,
            _child: child,
            _dir: dir,
        }
    }
}

//! A repository over SFTP, through the system `ssh` to a real OpenSSH
//! server on loopback (its `internal-sftp`): vigie creates, backs up and
//! lists over it; restic checks and restores the same files; vigie opens
//! what restic made; and an unreachable host or a wrong path is a clear
//! error naming what ssh said.

use std::fs;

use vigie_backup::{Error, RepoSpec, Request};
use vigie_testkit::need::Need;
use vigie_testkit::require;
use vigie_testkit::sshd::{Client, Sshd};

use crate::util::{PASSWORD, Place, make_tree, read_tree};

/// An sshd that lets the test's client in as root, and the client's
/// `ssh -F CONFIG` with the alias `nas` for it.
fn server() -> (Sshd, Client, Vec<String>) {
    let client = Client::new();
    let sshd = Sshd::start(&client.public_key());
    let config = client.config(&[("nas", &sshd, None)]);
    let ssh = vec![
        "ssh".to_owned(),
        "-F".to_owned(),
        config.to_str().unwrap().to_owned(),
    ];
    (sshd, client, ssh)
}

fn spec(place: &Place, ssh: &[String]) -> RepoSpec {
    let repository = format!("sftp:nas:{}", place.repo().display());
    RepoSpec::new("offsite", &repository)
        .unwrap()
        .with_ssh(ssh.to_vec())
}

#[test]
fn vigie_backs_up_over_sftp_and_restic_restores_it() {
    require!(Need::Sshd, Need::Restic);
    let (_sshd, _client, ssh) = server();
    let (place, src) = Place::with_tree();
    // A file of several packs' chunks, so reads and writes span many
    // pipelined requests and short final ones.
    fs::write(src.join("big"), crate::util::noise(9 * 1024 * 1024 + 17, 7)).unwrap();

    let repo = vigie_backup::init(&spec(&place, &ssh), PASSWORD).unwrap();
    let first = repo.backup(&Request::paths(&[&src])).unwrap();
    assert!(first.bytes_added > 9 * 1024 * 1024, "{first:?}");
    let second = repo.backup(&Request::paths(&[&src])).unwrap();
    assert_eq!(second.files_new + second.files_changed, 0, "{second:?}");

    // The same files, read by restic where they are: checked whole and
    // restored identically.
    place.restic_check();
    let target = place.path("restored");
    place.restic(&["restore", &second.id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    let (want, _) = read_tree(&src);
    let (got, _) = read_tree(&restored);
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &want {
        // Not assert_eq!: a 9 MiB file's bytes are no message.
        assert!(Some(entry) == got.get(path), "{} differs", path.display());
    }

    // A repository opened again over a new connection lists both.
    let again = vigie_backup::open(&spec(&place, &ssh), PASSWORD).unwrap();
    let ids: Vec<String> = again
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&first.id) && ids.contains(&second.id));
    // No temporary file is left anywhere in the repository.
    let leftovers: Vec<_> = walk(&place.repo())
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn vigie_opens_over_sftp_what_restic_made() {
    require!(Need::Sshd, Need::Restic);
    let (_sshd, _client, ssh) = server();
    let (place, src) = Place::with_tree();
    place.restic(&["init"]);
    place.restic(&["backup", src.to_str().unwrap()]);
    let repo = vigie_backup::open(&spec(&place, &ssh), PASSWORD).unwrap();
    assert_eq!(repo.snapshots().unwrap().len(), 1);
    let more = place.path("more");
    make_tree(&more);
    repo.backup(&Request::paths(&[&more])).unwrap();
    place.restic_check();
    assert_eq!(place.restic_snapshots().len(), 2);
}

#[test]
fn an_unreachable_host_or_a_wrong_path_is_a_clear_error() {
    require!(Need::Sshd);
    let (_sshd, _client, ssh) = server();
    let place = Place::new();

    // A host ssh cannot reach: ssh's own words are in the error.
    let unreachable = RepoSpec::new("offsite", "sftp:no-such-host.invalid:/srv/r")
        .unwrap()
        .with_ssh(ssh.clone());
    let err = vigie_backup::open(&unreachable, PASSWORD).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("no-such-host.invalid"), "{text}");
    assert!(text.contains("ssh:"), "ssh's message is kept: {text}");

    // A path where no repository is.
    let err = vigie_backup::open(&spec(&place, &ssh), PASSWORD).unwrap_err();
    assert!(matches!(err, Error::NoRepository { .. }), "{err}");

    // A malformed sftp: string says what the form is.
    let err = RepoSpec::new("offsite", "sftp:nas").unwrap_err();
    assert!(err.to_string().contains("sftp:[USER@]HOST:PATH"), "{err}");
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                todo.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out
}

//! `[[converge]]` jobs that pull their manifest from git (the GitOps
//! habit): at each run the system `git` fetches the job's `ref` into
//! `STATE/converge/NAME` and checks its commit out (detached); the run
//! applies that commit's manifest. A failed fetch leaves the last good
//! checkout as it was, and says why without the URL's credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vigie_config::{ConvergeGit, ConvergeJob};

/// A fetch or a checkout that takes longer has hung.
const GIT_TIMEOUT: Duration = Duration::from_mins(5);

/// A commit checked out, and the manifest in it.
#[derive(Clone, Debug)]
pub(crate) struct Pulled {
    pub manifest: PathBuf,
    pub commit: String,
}

/// Where job `name`'s checkout lives.
pub(crate) fn checkout_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("converge").join(name)
}

/// Run `git ARGS` in `repo`, never prompting; its output (with the
/// URL's credentials taken out) on failure.
async fn git(repo: &Path, g: &ConvergeGit, args: &[&str]) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(repo)
        // `ext::` runs a command; refused whatever the URL says.
        .args([
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env("LC_ALL", "C");
    let run = vigie_net::command::capture(cmd, vigie_net::command::Leftovers::Kill);
    let out = match tokio::time::timeout(GIT_TIMEOUT, run).await {
        Err(_) => {
            return Err(format!(
                "`git {}` timed out after {}s",
                args[0],
                GIT_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("cannot run git: {e} (install git)")),
        Ok(Ok(o)) => o,
    };
    let text = out.text.replace(&g.url, &g.shown_url());
    if out.status == Some(0) {
        Ok(text)
    } else {
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_owned();
        Err(format!("`git {}` failed: {last}", args[0]))
    }
}

/// Fetch the job's ref and check its commit out; the manifest in it.
pub(crate) async fn pull(
    job: &ConvergeJob,
    g: &ConvergeGit,
    state_dir: &Path,
) -> Result<Pulled, String> {
    let repo = checkout_dir(state_dir, &job.name);
    let fresh = std::fs::symlink_metadata(repo.join(".git")).map_or(true, |m| !m.is_dir());
    if fresh {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&repo)
            .map_err(|e| format!("{}: {e}", repo.display()))?;
        git(&repo, g, &["init", "--quiet"]).await?;
    }
    let refspec = format!("+{}:refs/vigie/pulled", g.reference);
    git(
        &repo,
        g,
        &["fetch", "--quiet", "--no-tags", "--", &g.url, &refspec],
    )
    .await?;
    let commit = git(
        &repo,
        g,
        &["rev-parse", "--verify", "refs/vigie/pulled^{commit}"],
    )
    .await?
    .trim()
    .to_owned();
    // A commit without the manifest is refused before the checkout
    // moves: the last good one stays.
    let at = format!("{commit}:{}", g.manifest.display());
    if git(&repo, g, &["cat-file", "-e", &at]).await.is_err() {
        return Err(format!(
            "commit {} of {} has no {}",
            short(&commit),
            g.reference,
            g.manifest.display()
        ));
    }
    git(
        &repo,
        g,
        &["checkout", "--quiet", "--force", "--detach", &commit],
    )
    .await?;
    let manifest = repo.join(&g.manifest);
    // A link in the repository could point anywhere on this host.
    let inside = std::fs::canonicalize(&manifest)
        .ok()
        .zip(std::fs::canonicalize(&repo).ok())
        .is_some_and(|(m, r)| m.starts_with(r));
    match std::fs::symlink_metadata(&manifest) {
        Ok(m) if m.is_file() && inside => Ok(Pulled { manifest, commit }),
        Ok(_) => Err(format!(
            "{} at commit {} is not a regular file of the repository",
            g.manifest.display(),
            short(&commit)
        )),
        Err(_) => Err(format!(
            "commit {} has no {}",
            short(&commit),
            g.manifest.display()
        )),
    }
}

/// A commit as people quote it.
pub(crate) fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

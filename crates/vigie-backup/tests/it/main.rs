//! vigie-backup against the real `restic`: what vigie writes, restic
//! checks, lists and restores; what restic writes, vigie reads; and the
//! errors a user meets, as the typed errors that say what to do.

mod databases;
mod dumps;
mod errors;
mod integrity;
mod killed;
mod locks;
mod rest;
mod restic_reads;
mod restore;
mod retention;
mod s3;
mod sftp;
mod util;
mod vigie_reads;

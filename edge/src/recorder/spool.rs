//! The recorder's spool: recorded segments on local disk until they are uploaded and reported.
//!
//! Layout under the spool directory:
//! - `{source}/{run}-{seq:020}.ts`: a job's segment bytes;
//! - `{source}/{run}-{seq:020}.json`: its [`Sidecar`] (what to report, for which recordings), written after the
//!   bytes, so a job exists exactly when its sidecar does;
//! - `failed/{source}/…`: jobs the object store refused for good, kept for an operator to inspect or move back;
//! - `*.tmp`: writes a crash interrupted, removed at start.
//!
//! Names sort in recording order (ULID runs sort by time, sequence numbers are zero-padded to u64's width), so a
//! listing of a source's directory is its queue. Every file is written whole (temp file, fsync, rename, fsync of
//! the directory), so a crash leaves either the old state or the new one.
//!
//! Everything here is blocking file I/O: callers run it on the blocking pool.

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use livemix_common::{model::SegmentInfo, segment_id::SegmentId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const FAILED: &str = "failed";
const SEGMENT_EXT: &str = "ts";
const SIDECAR_EXT: &str = "json";
const TMP_EXT: &str = "tmp";

/// What a spooled job reports once its bytes are in the object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sidecar {
    pub id: SegmentId,
    pub segment: SegmentInfo,
    pub recording_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("encoding the sidecar of {id}: {source}")]
    Encode { id: SegmentId, source: serde_json::Error },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    let path = path.to_owned();
    move |source| SpoolError::Io { action, path, source }
}

/// A job found by [`SpoolDir::scan`].
#[derive(Debug)]
pub struct Spooled {
    pub sidecar: Sidecar,
    /// Size of the segment bytes on disk.
    pub size: u64,
}

/// What [`SpoolDir::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Jobs to deliver, in recording order per source.
    pub jobs: Vec<Spooled>,
    /// Bytes under `failed/`, which count toward the budget until an operator clears them.
    pub failed_bytes: u64,
    /// Half-written files removed and unreadable jobs moved to `failed/`.
    pub cleaned: usize,
}

#[derive(Debug, Clone)]
pub struct SpoolDir {
    root: PathBuf,
}

impl SpoolDir {
    /// Opens (creating) the spool directory.
    pub fn open(root: PathBuf) -> Result<Self, SpoolError> {
        fs::create_dir_all(root.join(FAILED)).map_err(io_error("creating", &root))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn stem(id: &SegmentId) -> String {
        format!("{}-{:020}", id.run, id.seq)
    }

    fn path(&self, id: &SegmentId, ext: &str) -> PathBuf {
        self.root.join(id.source.to_string()).join(Self::stem(id)).with_extension(ext)
    }

    fn failed_path(&self, id: &SegmentId, ext: &str) -> PathBuf {
        self.root.join(FAILED).join(id.source.to_string()).join(Self::stem(id)).with_extension(ext)
    }

    /// Writes a job's segment bytes (the job does not exist until its sidecar is written too).
    pub fn write_segment(&self, id: &SegmentId, data: &[u8]) -> Result<(), SpoolError> {
        write_atomic(&self.path(id, SEGMENT_EXT), data)
    }

    /// Writes (or replaces) a job's sidecar.
    pub fn write_sidecar(&self, sidecar: &Sidecar) -> Result<(), SpoolError> {
        let json = serde_json::to_vec(sidecar).map_err(|source| SpoolError::Encode { id: sidecar.id, source })?;
        write_atomic(&self.path(&sidecar.id, SIDECAR_EXT), &json)
    }

    /// Where a job's segment bytes are, for reading them back.
    pub fn segment_path(&self, id: &SegmentId) -> PathBuf {
        self.path(id, SEGMENT_EXT)
    }

    /// Removes a delivered job: the sidecar first, so a crash in between leaves a stray segment file that the
    /// next scan removes, never a job without bytes.
    pub fn remove(&self, id: &SegmentId) -> Result<(), SpoolError> {
        remove_if_present(&self.path(id, SIDECAR_EXT))?;
        remove_if_present(&self.path(id, SEGMENT_EXT))
    }

    /// Moves a job the object store refused to `failed/`: the bytes first, so a crash in between leaves a sidecar
    /// without bytes, which the next scan moves too.
    pub fn move_to_failed(&self, id: &SegmentId) -> Result<(), SpoolError> {
        let dir = self.root.join(FAILED).join(id.source.to_string());
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        for ext in [SEGMENT_EXT, SIDECAR_EXT] {
            let from = self.path(id, ext);
            match fs::rename(&from, self.failed_path(id, ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error("moving", &from)(e)),
                _ => {}
            }
        }
        sync_dir(&dir)
    }

    /// Lists the spooled jobs, cleaning up after a crash: interrupted writes are removed, a segment without a
    /// sidecar (never a job) is removed, a sidecar that cannot be read is moved to `failed/`.
    pub fn scan(&self) -> Result<Scan, SpoolError> {
        let mut scan = Scan { failed_bytes: dir_bytes(&self.root.join(FAILED))?, ..Scan::default() };
        for entry in read_dir(&self.root)? {
            let path = entry.path();
            let Some(source) = path.file_name().and_then(|n| n.to_str()).and_then(|n| Uuid::parse_str(n).ok()) else {
                continue; // `failed/`, or not ours
            };
            if path.is_dir() {
                self.scan_source(source, &path, &mut scan)?;
            }
        }
        scan.jobs.sort_by_key(|job| job.sidecar.id);
        Ok(scan)
    }

    fn scan_source(&self, source: Uuid, dir: &Path, scan: &mut Scan) -> Result<(), SpoolError> {
        for entry in read_dir(dir)? {
            let path = entry.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some(TMP_EXT) => {
                    remove_if_present(&path)?;
                    scan.cleaned += 1;
                }
                Some(SEGMENT_EXT) if !path.with_extension(SIDECAR_EXT).exists() => {
                    tracing::info!(path = %path.display(), "removing a segment whose spooling was interrupted");
                    remove_if_present(&path)?;
                    scan.cleaned += 1;
                }
                Some(SIDECAR_EXT) => match self.load(source, &path) {
                    Ok(job) => scan.jobs.push(job),
                    Err(why) => {
                        tracing::error!(path = %path.display(), why, "unusable spooled job; moving it to failed/");
                        let failed = self.root.join(FAILED).join(source.to_string());
                        fs::create_dir_all(&failed).map_err(io_error("creating", &failed))?;
                        for file in [path.clone(), path.with_extension(SEGMENT_EXT)] {
                            if let Some(name) = file.file_name() {
                                match fs::rename(&file, failed.join(name)) {
                                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                                        return Err(io_error("moving", &file)(e));
                                    }
                                    Ok(()) => scan.failed_bytes += file_len(&failed.join(name)),
                                    Err(_) => {}
                                }
                            }
                        }
                        scan.cleaned += 1;
                    }
                },
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads a sidecar and checks it names the file it sits beside.
    fn load(&self, source: Uuid, path: &Path) -> Result<Spooled, String> {
        let json = fs::read(path).map_err(|e| format!("reading: {e}"))?;
        let sidecar: Sidecar = serde_json::from_slice(&json).map_err(|e| format!("not a sidecar: {e}"))?;
        if sidecar.id.source != source || self.path(&sidecar.id, SIDECAR_EXT) != path {
            return Err(format!("describes {}, not this file", sidecar.id));
        }
        let size = fs::metadata(path.with_extension(SEGMENT_EXT)).map_err(|e| format!("its segment: {e}"))?.len();
        Ok(Spooled { sidecar, size })
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, SpoolError> {
    fs::read_dir(dir).and_then(Iterator::collect).map_err(io_error("listing", dir))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of the files in `dir` and its subdirectories (one level deep: `failed/{source}/…`).
fn dir_bytes(dir: &Path) -> Result<u64, SpoolError> {
    let mut total = 0;
    for entry in read_dir(dir)? {
        let path = entry.path();
        total +=
            if path.is_dir() { read_dir(&path)?.iter().map(|e| file_len(&e.path())).sum() } else { file_len(&path) };
    }
    Ok(total)
}

fn remove_if_present(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Writes `data` to `path` so that after a crash `path` holds either its old content or all of `data`.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".");
    tmp.push(TMP_EXT);
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("writing", &tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_error("renaming", &tmp))?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_error("syncing", dir))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use ulid::Ulid;

    use super::*;

    fn sidecar(source: Uuid, run: Ulid, seq: u64) -> Sidecar {
        let id = SegmentId { source, run, seq };
        Sidecar {
            id,
            segment: SegmentInfo {
                name: format!("index{seq}.ts"),
                source,
                run: Some(run),
                seq: seq as i64,
                discontinuity: false,
                start_ts: Utc::now(),
                end_ts: Utc::now(),
                length_ms: 1000,
                size: 2,
                uri: id.object_key("recordings"),
                sha256: None,
            },
            recording_ids: vec!["rec".into()],
        }
    }

    #[test]
    fn scan_lists_jobs_in_order_and_cleans_up_after_a_crash() {
        let root = std::env::temp_dir().join(format!("livemix-spool-test-{}", Uuid::new_v4()));
        let spool = SpoolDir::open(root.clone()).unwrap();
        let source = Uuid::new_v4();
        let (run, later) = (Ulid::from_parts(1, 0), Ulid::from_parts(2, 0));
        for job in [sidecar(source, later, 0), sidecar(source, run, 10), sidecar(source, run, 9)] {
            spool.write_segment(&job.id, b"ts").unwrap();
            spool.write_sidecar(&job).unwrap();
        }
        // A crash mid-spool (bytes, no sidecar), a crash mid-write, a sidecar whose bytes are gone.
        let interrupted = sidecar(source, later, 1);
        spool.write_segment(&interrupted.id, b"ts").unwrap();
        fs::write(spool.path(&interrupted.id, "json.tmp"), b"half").unwrap();
        let orphan = sidecar(source, later, 2);
        spool.write_sidecar(&orphan).unwrap();

        let scan = spool.scan().unwrap();
        let order: Vec<_> = scan.jobs.iter().map(|j| (j.sidecar.id.run, j.sidecar.id.seq)).collect();
        assert_eq!(order, vec![(run, 9), (run, 10), (later, 0)]);
        assert_eq!(
            (scan.jobs[0].size, scan.jobs[0].sidecar.recording_ids.as_slice()),
            (2, ["rec".to_owned()].as_slice())
        );
        assert_eq!(scan.cleaned, 3);
        assert!(!spool.segment_path(&interrupted.id).exists());
        assert!(spool.failed_path(&orphan.id, SIDECAR_EXT).exists());

        spool.move_to_failed(&scan.jobs[0].sidecar.id).unwrap();
        spool.remove(&scan.jobs[1].sidecar.id).unwrap();
        let rescan = spool.scan().unwrap();
        assert_eq!(rescan.jobs.len(), 1);
        let failed = &scan.jobs[0].sidecar.id;
        let sidecars =
            file_len(&spool.failed_path(&orphan.id, SIDECAR_EXT)) + file_len(&spool.failed_path(failed, SIDECAR_EXT));
        assert_eq!(rescan.failed_bytes, sidecars + 2, "failed/ holds the orphan sidecar and one whole job");
        let _ = fs::remove_dir_all(root);
    }
}

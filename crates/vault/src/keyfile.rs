//! The key file: one key-encryption key per line, `<version> <base64 key>`.
//!
//! Everything read from or written to it passes through `Zeroizing` buffers,
//! and no error message quotes a line, since any line may hold a key.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::{fresh_key, parse_version, KeyRing, VaultError, KEK_LEN};

const HEADER: &str = "\
# Credence key-encryption keys.
#
# Keep this file secret; losing it loses every stored secret.
# Back it up, separately from the database.
#
# Every stored secret is encrypted with its own data key, and that data key is
# encrypted with one of the keys below. One key per line:
# `<version> <base64 32-byte key>`. The highest version seals new secrets;
# older versions must stay for as long as any secret is still wrapped under
# them. Add a version with `credence keys rotate` rather than by hand, and
# remove one with `credence keys retire --version N` once nothing uses it.
";

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the key file, or creates it with a fresh version-1 key if missing.
pub(crate) fn load_or_create(path: &Path) -> Result<KeyRing, VaultError> {
    match read(path) {
        Err(VaultError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            create(path)
        }
        other => other,
    }
}

/// Reads and parses the key file.
pub(crate) fn read(path: &Path) -> Result<KeyRing, VaultError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io_error(path))?);
    parse(path, &text)
}

fn create(path: &Path) -> Result<KeyRing, VaultError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Only directories we create get 0700; existing ones are left alone.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    // `create_new` with the mode set at creation leaves no window in which
    // the file exists with looser permissions.
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        // Another process created it first; use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return read(path),
        Err(e) => return Err(io_error(path)(e)),
    };
    let key = fresh_key();
    let mut text = Zeroizing::new(String::with_capacity(HEADER.len() + 64));
    text.push_str(HEADER);
    push_key_line(&mut text, 1, &key);
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| sync_parent(path));
    if let Err(e) = written {
        // A half-written key file would only be refused on the next start;
        // nothing can have been sealed with it yet, so remove it.
        let _ = fs::remove_file(path);
        return Err(io_error(path)(e));
    }
    Ok(BTreeMap::from([(1, key)]))
}

/// Adds a fresh key with version = highest + 1 to the key file and returns
/// the new version. Older keys stay: data wrapped under them still needs them.
///
/// The new file is written beside the old one (mode 0600) and renamed over it,
/// so a server re-reading the file concurrently sees either the old or the
/// new contents, never half a line. The side file doubles as a lock: two
/// concurrent rotations would otherwise both write the same version.
pub fn rotate_key_file(path: &Path) -> Result<u32, VaultError> {
    replace_locked(path, |text, keys| {
        let newest = keys.keys().next_back().copied().unwrap_or(0);
        let version = newest
            .checked_add(1)
            .ok_or_else(|| VaultError::VersionsExhausted {
                path: path.to_owned(),
            })?;
        text.reserve(64);
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        push_key_line(text, version, &fresh_key());
        Ok(version)
    })
}

/// Removes key `version` from the key file, which must hold it and must hold
/// a newer one: the newest version seals new values and is never retired.
/// Whether any stored value still uses `version` is the caller's question
/// (the vault sees no database); once removed, such values no longer open.
/// Written like [`rotate_key_file`], under the same lock.
pub fn retire_key_file(path: &Path, version: u32) -> Result<(), VaultError> {
    replace_locked(path, |text, keys| {
        let newest = keys.keys().next_back().copied().unwrap_or(0);
        if !keys.contains_key(&version) {
            return Err(VaultError::NoSuchVersion {
                path: path.to_owned(),
                version,
            });
        }
        if version == newest {
            return Err(VaultError::RetireCurrent {
                path: path.to_owned(),
                version,
            });
        }
        let mut kept = Zeroizing::new(String::with_capacity(text.len()));
        for line in text.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            let commented = line.trim_start().starts_with('#');
            if !commented && parse_version(first) == Some(version) {
                continue;
            }
            kept.push_str(line);
            kept.push('\n');
        }
        *text = kept;
        Ok(())
    })
}

/// Runs `change` on the key file's text under the side-file lock, checks the
/// result still parses, and renames it over the file (mode 0600).
fn replace_locked<T>(
    path: &Path,
    change: impl FnOnce(&mut Zeroizing<String>, &KeyRing) -> Result<T, VaultError>,
) -> Result<T, VaultError> {
    let lock = lock_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&lock)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => VaultError::RotationInProgress {
                path: path.to_owned(),
                lock: lock.clone(),
            },
            _ => io_error(&lock)(e),
        })?;
    let guard = RemoveOnDrop(&lock);

    let mut text = Zeroizing::new(fs::read_to_string(path).map_err(io_error(path))?);
    // Parsing first means we never change a file we could not read back.
    let keys = parse(path, &text)?;
    let answer = change(&mut text, &keys)?;
    parse(path, &text)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&lock))?;
    drop(file);
    fs::rename(&lock, path).map_err(io_error(path))?;
    std::mem::forget(guard);
    sync_parent(path).map_err(io_error(path))?;
    Ok(answer)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".rotating");
    path.with_file_name(name)
}

struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_file(self.0);
    }
}

/// Makes a create or rename durable, not just the file's contents.
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

fn push_key_line(text: &mut Zeroizing<String>, version: u32, key: &[u8; KEK_LEN]) {
    // Reserve up front so no reallocation leaves a stray copy of the key.
    text.reserve(16 + KEK_LEN * 2);
    text.push_str(&version.to_string());
    text.push(' ');
    STANDARD.encode_string(key, &mut *text);
    text.push('\n');
}

/// Parses key file text; `path` only labels errors.
pub(crate) fn parse(path: &Path, text: &str) -> Result<KeyRing, VaultError> {
    let mut keys = KeyRing::new();
    let mut first_seen = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let bad = |reason: String| VaultError::KeyFile {
            path: path.to_owned(),
            line: number,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [version, key] = fields[..] else {
            return Err(bad(format!(
                "expected `<version> <base64 key>`, found {} fields",
                fields.len()
            )));
        };
        // The field is not quoted: on a garbled line it may be the key.
        let version = parse_version(version).ok_or_else(|| {
            bad(format!(
                "the version is not a whole number from 1 to {}",
                u32::MAX
            ))
        })?;
        let decoded = Zeroizing::new(
            STANDARD
                .decode(key)
                .map_err(|_| bad(format!("the key of version {version} is not valid base64")))?,
        );
        if decoded.len() != KEK_LEN {
            return Err(bad(format!(
                "the key of version {version} is {} bytes, expected {KEK_LEN}",
                decoded.len()
            )));
        }
        // Copied straight into its zeroizing home, never via a bare array.
        let mut key = Zeroizing::new([0; KEK_LEN]);
        key.copy_from_slice(&decoded);
        if let Some(first) = first_seen.insert(version, number) {
            return Err(bad(format!(
                "version {version} appears twice (first on line {first})"
            )));
        }
        keys.insert(version, key);
    }
    if keys.is_empty() {
        return Err(VaultError::EmptyKeyFile {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

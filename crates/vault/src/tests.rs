//! Tests for sealing, tampering, rotation and the key file.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret as _, SecretString};

use super::*;

const SECRET: &[u8] = b"sk_live_hunter2-very-secret-token";
const ROW: &str = "credential:4f1c:secret";

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let name = format!("credence-vault-test-{:016x}", OsRng.next_u64());
        let dir = std::env::temp_dir().join(name);
        fs::create_dir(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn test_vault() -> Vault {
    Vault::from_keys(vec![(1, [7; 32])])
}

fn fields(sealed: &Sealed) -> Vec<String> {
    sealed.as_str().split('.').map(str::to_owned).collect()
}

/// `sealed` with byte `index` of decoded field `field` (2 = key, 3 = payload)
/// flipped, re-encoded so that only the AEAD can notice.
fn flip(sealed: &Sealed, field: usize, index: usize) -> Sealed {
    let mut parts = fields(sealed);
    let mut bytes = URL_SAFE_NO_PAD.decode(&parts[field]).unwrap();
    bytes[index] ^= 0x01;
    parts[field] = URL_SAFE_NO_PAD.encode(bytes);
    Sealed::from_stored(parts.join("."))
}

fn keys_in(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(' ').nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn round_trip() {
    let vault = test_vault();
    let sealed = vault.seal(SECRET, ROW).unwrap();
    assert!(
        sealed.as_str().starts_with("cv1.k1."),
        "{}",
        sealed.as_str()
    );
    assert_eq!(vault.open(&sealed, ROW).unwrap().expose_secret(), SECRET);

    // Stored and read back as text.
    let stored = Sealed::from_stored(sealed.clone().into_string());
    assert_eq!(stored, sealed);
    assert_eq!(stored.key_version().unwrap(), 1);
    assert_eq!(vault.open(&stored, ROW).unwrap().expose_secret(), SECRET);

    // Fresh DEK and nonces per call: the same input never seals the same way.
    let again = vault.seal(SECRET, ROW).unwrap();
    assert_ne!(fields(&again)[2], fields(&sealed)[2]);
    assert_ne!(fields(&again)[3], fields(&sealed)[3]);

    let empty = vault.seal(b"", ROW).unwrap();
    assert!(vault.open(&empty, ROW).unwrap().expose_secret().is_empty());
}

#[test]
fn string_round_trip_and_invalid_utf8() {
    let vault = test_vault();
    let secret = SecretString::from("ghp_tötally-secret");
    let sealed = vault.seal_str(&secret, ROW).unwrap();
    let opened = vault.open_string(&sealed, ROW).unwrap();
    assert_eq!(opened.expose_secret(), "ghp_tötally-secret");

    let binary = vault.seal(&[0xff, 0xfe, 0x00], ROW).unwrap();
    assert!(matches!(
        vault.open_string(&binary, ROW),
        Err(VaultError::Malformed(_))
    ));
}

#[test]
fn every_flipped_byte_of_either_part_fails_to_open() {
    let vault = test_vault();
    let sealed = vault.seal(SECRET, ROW).unwrap();
    for field in [2, 3] {
        let len = URL_SAFE_NO_PAD
            .decode(&fields(&sealed)[field])
            .unwrap()
            .len();
        for index in 0..len {
            let tampered = flip(&sealed, field, index);
            assert!(
                matches!(vault.open(&tampered, ROW), Err(VaultError::Decrypt)),
                "flipping byte {index} of field {field} went unnoticed"
            );
            assert!(matches!(
                vault.rewrap(&tampered, ROW),
                Ok(None) | Err(VaultError::Decrypt)
            ));
        }
    }
}

#[test]
fn flipped_base64_character_fails_to_open() {
    let vault = test_vault();
    let sealed = vault.seal(SECRET, ROW).unwrap();
    let text = sealed.as_str();
    let key_start = text.match_indices('.').nth(1).unwrap().0 + 1;
    let payload_start = text.rfind('.').unwrap() + 1;
    for at in [key_start + 5, payload_start + 5] {
        let mut bytes = text.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = Sealed::from_stored(String::from_utf8(bytes).unwrap());
        assert!(vault.open(&tampered, ROW).is_err(), "edit at {at} opened");
    }
}

#[test]
fn other_context_fails_to_open() {
    let vault = test_vault();
    let sealed = vault.seal(SECRET, ROW).unwrap();
    for other in ["credential:4f1d:secret", "", "credential:4f1c:secre"] {
        assert!(matches!(
            vault.open(&sealed, other),
            Err(VaultError::Decrypt)
        ));
    }
    // The wrapped data key is bound on its own too, not only via the payload.
    let key_part = URL_SAFE_NO_PAD.decode(&fields(&sealed)[2]).unwrap();
    let kek = cipher(&[7; 32]);
    assert!(unwrap_dek(&kek, &key_part, ROW).is_ok());
    assert!(matches!(
        unwrap_dek(&kek, &key_part, "credential:4f1d:secret"),
        Err(VaultError::Decrypt)
    ));
}

#[test]
fn other_key_fails_to_open() {
    let sealed = test_vault().seal(SECRET, ROW).unwrap();
    let impostor = Vault::from_keys(vec![(1, [8; 32])]);
    assert!(matches!(
        impostor.open(&sealed, ROW),
        Err(VaultError::Decrypt)
    ));
}

#[test]
fn unknown_version_fails() {
    let vault = test_vault();
    let sealed = vault.seal(SECRET, ROW).unwrap();
    let relabelled = Sealed::from_stored(sealed.as_str().replacen("cv1.k1.", "cv1.k7.", 1));
    assert!(matches!(
        vault.open(&relabelled, ROW),
        Err(VaultError::UnknownKeyVersion(7))
    ));

    let newer = Vault::from_keys(vec![(2, [7; 32])]);
    let err = newer.open(&sealed, ROW).unwrap_err();
    assert!(matches!(err, VaultError::UnknownKeyVersion(1)));
    assert!(err.to_string().contains("version 1"), "{err}");

    // A file-backed vault looks in its file, and still reports the version.
    let dir = TempDir::new();
    let file_vault = Vault::open_or_create(&dir.join("keys")).unwrap();
    let sealed = file_vault.seal(SECRET, ROW).unwrap();
    let relabelled = Sealed::from_stored(sealed.as_str().replacen("cv1.k1.", "cv1.k9.", 1));
    assert!(matches!(
        file_vault.open(&relabelled, ROW),
        Err(VaultError::UnknownKeyVersion(9))
    ));
}

#[test]
fn malformed_sealed_values_are_rejected() {
    let vault = test_vault();
    let good = vault.seal(SECRET, ROW).unwrap();
    let [_, _, key, payload] = &fields(&good)[..] else {
        panic!("four fields")
    };
    let cases = [
        String::new(),
        "plaintext-token-stored-unsealed".to_owned(),
        format!("cv2.k1.{key}.{payload}"),
        format!("cv1.1.{key}.{payload}"),
        format!("cv1.k0.{key}.{payload}"),
        format!("cv1.k01.{key}.{payload}"),
        format!("cv1.k+1.{key}.{payload}"),
        format!("cv1.k4294967296.{key}.{payload}"),
        format!("cv1.k1.{key}"),
        format!("cv1.k1.{key}.{payload}.extra"),
        format!("cv1.k1.{key}=.{payload}"),
        format!("cv1.k1.{}.{payload}", &key[..key.len() - 4]),
        format!("cv1.k1.{key}.{}", &payload[..20]),
        format!("cv1.k1.{key}.{payload}!"),
    ];
    for case in cases {
        let err = vault
            .open(&Sealed::from_stored(case.clone()), ROW)
            .unwrap_err();
        assert!(matches!(err, VaultError::Malformed(_)), "{case}: {err:?}");
        assert!(!err.to_string().contains("plaintext-token"), "{err}");
    }
}

#[test]
fn rewrap_after_rotation_moves_to_new_version_and_keeps_payload() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let before = Vault::open_or_create(&path).unwrap();
    assert_eq!(before.current_version(), 1);
    let old = before.seal(SECRET, ROW).unwrap();
    assert_eq!(before.rewrap(&old, ROW).unwrap(), None);

    assert_eq!(rotate_key_file(&path).unwrap(), 2);
    assert_eq!(keys_in(&path).len(), 2);

    let after = Vault::open_or_create(&path).unwrap();
    assert_eq!(after.current_version(), 2);
    let new = after
        .rewrap(&old, ROW)
        .unwrap()
        .expect("old version rewraps");
    assert_eq!(new.key_version().unwrap(), 2);
    assert_eq!(fields(&new)[3], fields(&old)[3], "payload must not change");
    assert_ne!(fields(&new)[2], fields(&old)[2]);
    assert_eq!(after.open(&new, ROW).unwrap().expose_secret(), SECRET);
    assert_eq!(after.open(&old, ROW).unwrap().expose_secret(), SECRET);
    assert_eq!(after.rewrap(&new, ROW).unwrap(), None);
    assert!(matches!(
        after.rewrap(&old, "credential:other"),
        Err(VaultError::Decrypt)
    ));

    // The vault loaded before the rotation finds version 2 in the file.
    assert_eq!(before.open(&new, ROW).unwrap().expose_secret(), SECRET);
    assert_eq!(before.current_version(), 2);
    assert_eq!(before.seal(SECRET, ROW).unwrap().key_version().unwrap(), 2);
}

#[test]
fn rewrap_by_stale_vault_reloads_and_rejects_bad_payload() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let stale = Vault::open_or_create(&path).unwrap();
    let old = stale.seal(SECRET, ROW).unwrap();
    rotate_key_file(&path).unwrap();
    rotate_key_file(&path).unwrap();
    let newest = Vault::open_or_create(&path).unwrap();
    let v3 = newest.seal(SECRET, ROW).unwrap();

    // Opening v3 makes the stale vault reload; it then rewraps to 3.
    assert!(stale.open(&v3, ROW).is_ok());
    let moved = stale.rewrap(&old, ROW).unwrap().unwrap();
    assert_eq!(moved.key_version().unwrap(), 3);

    // A corrupt payload is reported, not carried forward under a new key.
    let corrupt = flip(&old, 3, 30);
    assert!(matches!(
        newest.rewrap(&corrupt, ROW),
        Err(VaultError::Decrypt)
    ));
}

#[test]
fn reload_picks_up_rotation() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let vault = Vault::open_or_create(&path).unwrap();
    rotate_key_file(&path).unwrap();
    vault.reload().unwrap();
    assert_eq!(vault.current_version(), 2);
    test_vault().reload().unwrap();
}

/// Issue: `current_version` answered the version in memory, so a renewal
/// pass that read it after a rotation worked towards the replaced version.
#[test]
fn current_version_follows_a_key_file_rotated_since_the_vault_was_loaded() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let vault = Vault::open_or_create(&path).unwrap();
    assert_eq!(vault.current_version(), 1);
    rotate_key_file(&path).unwrap();
    assert_eq!(vault.current_version(), 2);
    rotate_key_file(&path).unwrap();
    retire_key_file(&path, 1).unwrap();
    assert_eq!(vault.current_version(), 3);
}

#[test]
fn key_file_created_0600_in_new_dirs_and_reopened() {
    let dir = TempDir::new();
    let path = dir.join("nested/deeper/keys");
    let vault = Vault::open_or_create(&path).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.join("nested/deeper")), 0o700);

    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with('#'));
    assert!(text.contains("Keep this file secret; losing it loses every stored secret"));
    assert_eq!(STANDARD.decode(&keys_in(&path)[0]).unwrap().len(), 32);

    // Opening again reads the same key rather than making a new one.
    let sealed = vault.seal(SECRET, ROW).unwrap();
    let reopened = Vault::open_or_create(&path).unwrap();
    assert_eq!(reopened.open(&sealed, ROW).unwrap().expose_secret(), SECRET);

    rotate_key_file(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert!(fs::read_to_string(&path).unwrap().starts_with(&text));
}

#[test]
fn malformed_key_file_names_line_not_key() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let good = STANDARD.encode([3; 32]);
    let short = STANDARD.encode([4; 31]);
    let cases = [
        (format!("# c\n1 {good}\n2 {short}\n"), 3, short.as_str()),
        (format!("1 {good}\n\n{good}\n"), 3, good.as_str()),
        (format!("{good} 1\n"), 1, good.as_str()),
        (format!("1 {good} extra\n"), 1, good.as_str()),
        (format!("1 {good}\n2 {good}!\n"), 2, good.as_str()),
        (format!("1 {good}\n1 {good}\n"), 2, good.as_str()),
        (format!("0 {good}\n"), 1, good.as_str()),
    ];
    for (text, line, key) in cases {
        fs::write(&path, &text).unwrap();
        let err = Vault::open_or_create(&path).unwrap_err();
        let VaultError::KeyFile { line: got, .. } = &err else {
            panic!("expected a key file error for {text:?}, got {err:?}");
        };
        assert_eq!(*got, line, "{err}");
        let message = err.to_string();
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(!message.contains(key), "{message}");
        assert!(!message.contains(&key[..12]), "{message}");
        assert!(!format!("{err:?}").contains(&key[..12]), "{err:?}");
        // Nor is a broken file ever rotated.
        assert!(rotate_key_file(&path).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
    }
}

#[test]
fn empty_key_file_is_refused() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    fs::write(&path, "# all comments\n\n").unwrap();
    let err = Vault::open_or_create(&path).unwrap_err();
    assert!(matches!(err, VaultError::EmptyKeyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("no keys"), "{err}");
    // It was not "helpfully" filled with a new key.
    assert_eq!(fs::read_to_string(&path).unwrap(), "# all comments\n\n");
}

#[test]
fn rotation_refuses_while_lock_file_exists() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    Vault::open_or_create(&path).unwrap();
    fs::write(dir.join("keys.rotating"), "").unwrap();
    let err = rotate_key_file(&path).unwrap_err();
    assert!(
        matches!(err, VaultError::RotationInProgress { .. }),
        "{err:?}"
    );
    assert_eq!(keys_in(&path).len(), 1);
    fs::remove_file(dir.join("keys.rotating")).unwrap();
    assert_eq!(rotate_key_file(&path).unwrap(), 2);
    assert!(!dir.join("keys.rotating").exists());
}

#[test]
fn rotating_a_missing_file_fails() {
    let dir = TempDir::new();
    let err = rotate_key_file(&dir.join("absent")).unwrap_err();
    assert!(matches!(err, VaultError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
    assert!(!dir.join("absent.rotating").exists());
}

#[test]
fn debug_output_shows_neither_keys_nor_plaintext() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let vault = Vault::open_or_create(&path).unwrap();
    rotate_key_file(&path).unwrap();
    vault.reload().unwrap();
    let keys = keys_in(&path);

    let sealed = vault.seal(SECRET, ROW).unwrap();
    let opened = vault.open(&sealed, ROW).unwrap();
    let text = vault
        .open_string(&vault.seal(SECRET, ROW).unwrap(), ROW)
        .unwrap();
    let secret = std::str::from_utf8(SECRET).unwrap();

    let vault_debug = format!("{vault:?}");
    assert_eq!(vault_debug, "Vault { versions: [1, 2], current: 2 }");
    let sealed_debug = format!("{sealed:?}");
    assert_eq!(
        sealed_debug,
        format!("Sealed(k2, {} bytes)", sealed.as_str().len())
    );
    for debug in [
        vault_debug,
        sealed_debug,
        format!("{opened:?}"),
        format!("{text:?}"),
    ] {
        assert!(!debug.contains(secret), "{debug}");
        for key in &keys {
            assert!(!debug.contains(key.as_str()), "{debug}");
        }
        assert!(!debug.contains(&fields(&sealed)[3]), "{debug}");
    }

    let fixed = Vault::from_keys(vec![(1, [0x41; 32])]);
    let debug = format!("{fixed:?}");
    assert!(!debug.contains(&STANDARD.encode([0x41; 32])), "{debug}");
    assert!(!debug.contains("65"), "{debug}");
    assert_eq!(
        format!("{:?}", Sealed::from_stored("junk".into())),
        "Sealed(malformed, 4 bytes)"
    );
}

#[test]
fn vault_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vault>();

    let vault = Arc::new(test_vault());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let vault = Arc::clone(&vault);
            std::thread::spawn(move || {
                let row = format!("row:{i}");
                let sealed = vault.seal(SECRET, &row).unwrap();
                vault.open(&sealed, &row).unwrap().expose_secret().clone()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), SECRET);
    }
}

#[test]
#[should_panic(expected = "given twice")]
fn from_keys_rejects_duplicate_versions() {
    Vault::from_keys(vec![(1, [1; 32]), (1, [2; 32])]);
}

#[test]
fn a_running_vault_seals_under_a_rotated_version_without_opening_one_first() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let running = Vault::open_or_create(&path).unwrap();
    assert_eq!(running.seal(SECRET, ROW).unwrap().key_version().unwrap(), 1);
    rotate_key_file(&path).unwrap();
    // No reload, no value of version 2 opened: the replaced file is noticed.
    let sealed = running.seal(SECRET, ROW).unwrap();
    assert_eq!(sealed.key_version().unwrap(), 2);
    assert_eq!(running.open(&sealed, ROW).unwrap().expose_secret(), SECRET);
    rotate_key_file(&path).unwrap();
    let old = running.seal(SECRET, ROW).unwrap();
    assert_eq!(old.key_version().unwrap(), 3);
}

#[test]
fn retiring_removes_an_old_version_but_never_the_newest_or_an_unknown_one() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let vault = Vault::open_or_create(&path).unwrap();
    let on_one = vault.seal(SECRET, ROW).unwrap();
    assert!(matches!(
        retire_key_file(&path, 1),
        Err(VaultError::RetireCurrent { version: 1, .. })
    ));
    rotate_key_file(&path).unwrap();
    let on_two = vault.seal(SECRET, ROW).unwrap();
    assert!(matches!(
        retire_key_file(&path, 7),
        Err(VaultError::NoSuchVersion { version: 7, .. })
    ));
    assert!(matches!(
        retire_key_file(&path, 2),
        Err(VaultError::RetireCurrent { version: 2, .. })
    ));
    let kept = keys_in(&path)[1].clone();
    retire_key_file(&path, 1).unwrap();
    assert_eq!(keys_in(&path), vec![kept], "only version 1 is gone");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!lock_path_of(&path).exists(), "the lock file is removed");
    assert!(fs::read_to_string(&path).unwrap().starts_with("# Credence"));

    let fresh = Vault::open_or_create(&path).unwrap();
    assert_eq!(fresh.open(&on_two, ROW).unwrap().expose_secret(), SECRET);
    assert!(matches!(
        fresh.open(&on_one, ROW),
        Err(VaultError::UnknownKeyVersion(1))
    ));
    // The running vault follows the file at its next seal.
    assert_eq!(vault.seal(SECRET, ROW).unwrap().key_version().unwrap(), 2);
    assert!(matches!(
        vault.open(&on_one, ROW),
        Err(VaultError::UnknownKeyVersion(1))
    ));
}

#[test]
fn reseal_moves_a_value_to_another_context_under_the_current_key() {
    let dir = TempDir::new();
    let path = dir.join("keys");
    let vault = Vault::open_or_create(&path).unwrap();
    let legacy = vault.seal(SECRET, "secret:1:connection").unwrap();
    rotate_key_file(&path).unwrap();
    let bound = vault
        .reseal(
            &legacy,
            "secret:1:connection",
            "connection:5:team:2:secret:1:connection",
        )
        .unwrap();
    assert_eq!(bound.key_version().unwrap(), 2);
    assert_eq!(
        vault
            .open(&bound, "connection:5:team:2:secret:1:connection")
            .unwrap()
            .expose_secret(),
        SECRET
    );
    assert!(matches!(
        vault.open(&bound, "secret:1:connection"),
        Err(VaultError::Decrypt)
    ));
    assert!(matches!(
        vault.reseal(&legacy, "secret:2:connection", "x"),
        Err(VaultError::Decrypt)
    ));
}

fn lock_path_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap().to_owned();
    name.push(".rotating");
    path.with_file_name(name)
}

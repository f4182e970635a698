//! A JSON object whose strings are secrets: the app's field values of an
//! authorize or add-connection body, a token endpoint's answer, the values about
//! to be sealed. serde_json keeps every string in a plain `String`, so such an
//! object leaves copies of the secrets in freed memory; [`SecretJson`] zeroizes
//! every string (and key) it holds when it is dropped, and its `Debug` shows
//! only how many fields it has.
//!
//! Take the secret out as a [`secrecy::SecretString`] (which zeroizes too) and
//! let the `SecretJson` go out of scope promptly.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;
use std::ops::{Deref, DerefMut};
use zeroize::{Zeroize, Zeroizing};

/// A JSON object, zeroized on drop. Derefs to the `serde_json::Map` for reading
/// and for taking fields out (a field taken out is the taker's to protect).
#[derive(Default)]
pub struct SecretJson(Map<String, Value>);

impl SecretJson {
    /// The object as JSON text, in a buffer that is zeroized on drop (sized
    /// up front so that writing never reallocates and leaves a copy behind).
    pub fn to_json_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(self.json_capacity()));
        // Writing a map of strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *bytes, &self.0);
        bytes
    }
}

impl SecretJson {
    /// An upper bound of the JSON text's length: a character takes at most six
    /// bytes escaped (`\u001f`); quotes, colons and commas at most four per field.
    fn json_capacity(&self) -> usize {
        2 + self
            .0
            .iter()
            .map(|(key, value)| 6 * (key.len() + text_length(value)) + 4)
            .sum::<usize>()
    }
}

/// An upper bound of the characters a value takes as JSON, before escaping.
fn text_length(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len() + 2,
        Value::Array(items) => {
            2 + items
                .iter()
                .map(|item| text_length(item) + 1)
                .sum::<usize>()
        }
        Value::Object(fields) => {
            2 + fields
                .iter()
                .map(|(key, value)| key.len() + 4 + text_length(value))
                .sum::<usize>()
        }
        // Numbers, booleans and null; a long number's digits are bounded too.
        other => other.to_string().len(),
    }
}

impl From<Map<String, Value>> for SecretJson {
    fn from(map: Map<String, Value>) -> SecretJson {
        SecretJson(map)
    }
}

impl FromIterator<(String, Value)> for SecretJson {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> SecretJson {
        SecretJson(iter.into_iter().collect())
    }
}

impl Deref for SecretJson {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl DerefMut for SecretJson {
    fn deref_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.0
    }
}

impl<'de> Deserialize<'de> for SecretJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretJson, D::Error> {
        Map::deserialize(deserializer).map(SecretJson)
    }
}

impl fmt::Debug for SecretJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretJson([REDACTED], {} fields)", self.0.len())
    }
}

impl Drop for SecretJson {
    fn drop(&mut self) {
        for (key, value) in std::mem::take(&mut self.0) {
            wipe_text(key);
            wipe(value);
        }
    }
}

/// Zeroizes every string in `value`, however deep.
pub fn wipe(value: Value) {
    match value {
        Value::String(text) => wipe_text(text),
        Value::Array(items) => items.into_iter().for_each(wipe),
        Value::Object(fields) => {
            for (key, value) in fields {
                wipe_text(key);
                wipe(value);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn wipe_text(mut text: String) {
    text.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_shows_no_value() {
        let fields: SecretJson =
            serde_json::from_value(json!({ "apiKey": "sk-live-do-not-print" })).unwrap();
        let shown = format!("{fields:?}");
        assert!(!shown.contains("sk-live-do-not-print"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert_eq!(
            fields["apiKey"], "sk-live-do-not-print",
            "reads see the value"
        );
    }

    #[test]
    fn json_bytes_match_serde_json_and_fit_their_buffer() {
        let fields: SecretJson = serde_json::from_value(json!({
            "apiKey": "k\u{1}\"\\ü",
            "nested": { "a": ["b", 1, null, true] },
        }))
        .unwrap();
        let bytes = fields.to_json_bytes();
        assert_eq!(
            serde_json::from_slice::<Value>(&bytes).unwrap(),
            Value::Object(fields.0.clone())
        );
        assert!(
            bytes.len() <= fields.json_capacity(),
            "the buffer never grew (a growing Vec leaves copies behind)"
        );
    }
}

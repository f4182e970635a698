//! Scrubbing the connection's secrets out of a proxied answer (SPEC §8: the
//! team uses a connection "without ever seeing a secret"). An app may echo
//! what it was sent — `invalid key sk_live_…`, a `/me` that returns the key, a
//! header carrying the token — and the broker injected it, so the broker takes
//! it out again: every occurrence of a secret value the call sent
//! (`provider::call::sent_secrets`), in the forms an app is likely to write it
//! in, becomes a mask of `*` of the same length, in the headers and in the
//! body as it streams.
//!
//! What it cannot catch: a value the app transformed some other way (a slice
//! of it, a hash, upper case) and values shorter than [`MIN_SECRET_LEN`].

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use axum::http::{HeaderMap, HeaderValue};
use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

/// The shortest value that is scrubbed, in bytes. A shorter one (a PIN, a
/// literal `x` password, a 4-digit account number) would be masked wherever
/// those few bytes happen to appear, garbling ordinary bodies (numbers, words,
/// JSON keys) while hiding little: a secret that short is not what keeps an
/// account safe. Eight bytes is below every real API key, token and
/// password policy, so those are always scrubbed, and long enough that a
/// coincidental match in ordinary text is rare.
pub const MIN_SECRET_LEN: usize = 8;

/// The byte a secret's bytes are replaced with.
const MASK: u8 = b'*';

/// Finds the secret values of one call in what the app answers. It lives as
/// long as the answer streams. The forms it searches for are held in
/// zeroizing memory; the searcher's own tables (like reqwest's copy of the
/// injected header) are not zeroized, and are freed with the answer. Its
/// `Debug` shows only how many forms it has.
pub struct Scrubber {
    searcher: Option<AhoCorasick>,
    /// The forms searched for: a chunk that ends with the start of one holds
    /// that end back until the next chunk shows whether the form goes on.
    forms: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("forms", &self.forms.len())
            .finish_non_exhaustive()
    }
}

impl Scrubber {
    /// A scrubber of `secrets` (values as sent) and their encoded forms;
    /// values shorter than [`MIN_SECRET_LEN`] are left out.
    pub fn new(secrets: &[SecretString]) -> Scrubber {
        let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let long_enough = secrets
            .iter()
            .map(ExposeSecret::expose_secret)
            .filter(|secret| secret.len() >= MIN_SECRET_LEN);
        for secret in long_enough {
            for form in forms_of(secret) {
                if !forms.iter().any(|kept| **kept == *form) {
                    forms.push(form);
                }
            }
        }
        // The standard match kind finds every occurrence, overlapping ones
        // included, so that one form masked does not hide a neighbour's
        // remaining bytes from the search.
        // A non-contiguous NFA, the kind aho-corasick builds fastest: one is
        // built for every call, and searches only that call's answer.
        let searcher = (!forms.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::NoncontiguousNFA))
                    .build(forms.iter().map(|form| form.as_slice()))
                    .ok()
            })
            .flatten();
        Scrubber { searcher, forms }
    }

    /// Whether there is anything to scrub.
    pub fn is_empty(&self) -> bool {
        self.searcher.is_none()
    }

    /// `bytes` with every secret masked; `None` when none is in it.
    pub fn masked(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let searcher = self.searcher.as_ref()?;
        let mut hidden = vec![false; bytes.len()];
        let mut found = false;
        for found_at in searcher.find_overlapping_iter(bytes) {
            hidden[found_at.range()].fill(true);
            found = true;
        }
        found.then(|| apply(bytes, &hidden))
    }

    /// The app's headers with every secret masked. A header value holding a
    /// secret keeps its name and the shape of its value, with the secret's
    /// bytes masked, rather than being dropped: the caller sees that the app
    /// said something there (a `Location`, a `WWW-Authenticate` naming a
    /// realm, an echo), the rule is the body's, and the mask is no credential.
    /// A header whose *name* holds a secret has nothing left to show and is
    /// dropped.
    pub fn headers(&self, headers: HeaderMap) -> HeaderMap {
        if self.is_empty() {
            return headers;
        }
        let mut kept = HeaderMap::with_capacity(headers.len());
        let mut name = None;
        for (next, value) in headers {
            if let Some(next) = next {
                name = Some(next);
            }
            let Some(name) = name.clone() else { continue };
            if self.masked(name.as_str().as_bytes()).is_some() {
                continue;
            }
            let value = match self.masked(value.as_bytes()) {
                None => value,
                Some(masked) => match HeaderValue::from_bytes(&masked) {
                    Ok(mut masked) => {
                        masked.set_sensitive(true);
                        masked
                    }
                    Err(_) => continue,
                },
            };
            kept.append(name, value);
        }
        kept
    }

    /// `body` with every secret masked as it streams: each chunk goes on at
    /// once but for an end that is the start of a form, held back until the
    /// next chunk shows whether the form goes on (so an ordinary stream,
    /// events of a feed say, is not delayed). The length never changes.
    pub fn body<S, E>(self, body: S) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Send + 'static,
    {
        let state = Some((Box::pin(body), Streaming::new(self)));
        futures_util::stream::unfold(state, |state| async move {
            let (mut body, mut streaming) = state?;
            loop {
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let out = streaming.push(&chunk);
                        if !out.is_empty() {
                            return Some((Ok(out), Some((body, streaming))));
                        }
                    }
                    Some(Err(error)) => return Some((Err(error), None)),
                    None => {
                        let rest = streaming.finish();
                        return (!rest.is_empty()).then_some((Ok(rest), None));
                    }
                }
            }
        })
    }
}

impl Scrubber {
    /// How many of the last bytes of `bytes` are the start of a form (the
    /// longest such end, short of a whole form): the bytes a chunk must hold
    /// back, as a form that straddles two chunks starts there.
    fn started(&self, bytes: &[u8]) -> usize {
        self.forms
            .iter()
            .filter_map(|form| {
                (1..form.len().min(bytes.len() + 1))
                    .rev()
                    .find(|&length| bytes.ends_with(&form[..length]))
            })
            .max()
            .unwrap_or(0)
    }
}

/// The state of one streamed body: the bytes held back (as the app sent
/// them) and which of them are already known to be a secret's.
struct Streaming {
    scrubber: Scrubber,
    held: Vec<u8>,
    hidden: Vec<bool>,
}

impl Streaming {
    fn new(scrubber: Scrubber) -> Streaming {
        Streaming {
            scrubber,
            held: Vec::new(),
            hidden: Vec::new(),
        }
    }

    /// The next chunk in; what can go on now out.
    fn push(&mut self, chunk: &[u8]) -> Bytes {
        let Some(searcher) = &self.scrubber.searcher else {
            return Bytes::copy_from_slice(chunk);
        };
        self.held.extend_from_slice(chunk);
        self.hidden.resize(self.held.len(), false);
        // The held bytes are searched again with the new ones: they are kept
        // as sent (not masked), so a form that starts there is found whole.
        for found_at in searcher.find_overlapping_iter(&self.held) {
            self.hidden[found_at.range()].fill(true);
        }
        let keep = self.scrubber.started(&self.held);
        let ready = self.held.len() - keep;
        let out = apply(&self.held[..ready], &self.hidden[..ready]);
        self.held.drain(..ready);
        self.hidden.drain(..ready);
        Bytes::from(out)
    }

    /// The end of the body: what was held back, masked.
    fn finish(&mut self) -> Bytes {
        let out = apply(&self.held, &self.hidden);
        self.held.clear();
        self.hidden.clear();
        Bytes::from(out)
    }
}

fn apply(bytes: &[u8], hidden: &[bool]) -> Vec<u8> {
    bytes
        .iter()
        .zip(hidden)
        .map(|(byte, hidden)| if *hidden { MASK } else { *byte })
        .collect()
}

/// The forms of `value` an app is likely to write: as sent; JSON-escaped
/// (`"` and `\`, and `/` as `\/` as some encoders do); percent-encoded (as
/// a query or a form would carry it, upper- and lower-case hex, a space as
/// `+` too). Basic's `base64(username:password)` is a value of its own
/// (`sent_secrets`), so it gets these forms as well.
fn forms_of(value: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let mut forms = vec![Zeroizing::new(value.as_bytes().to_vec())];
    let mut add = |form: Zeroizing<String>| {
        let form = Zeroizing::new(form.as_bytes().to_vec());
        if !forms.contains(&form) {
            forms.push(form);
        }
    };
    add(json_escaped(value, false));
    add(json_escaped(value, true));
    add(percent_encoded(value, false, false));
    add(percent_encoded(value, true, false));
    add(percent_encoded(value, false, true));
    forms
}

fn json_escaped(value: &str, slash: bool) -> Zeroizing<String> {
    let mut escaped = Zeroizing::new(String::with_capacity(value.len() * 2));
    for c in value.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '/' if slash => escaped.push_str("\\/"),
            _ => escaped.push(c),
        }
    }
    escaped
}

fn percent_encoded(value: &str, lower: bool, plus_for_space: bool) -> Zeroizing<String> {
    const UPPER: &[u8; 16] = b"0123456789ABCDEF";
    const LOWER: &[u8; 16] = b"0123456789abcdef";
    let digits = if lower { LOWER } else { UPPER };
    let mut encoded = Zeroizing::new(String::with_capacity(value.len() * 3));
    for &byte in value.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte));
            }
            b' ' if plus_for_space => encoded.push('+'),
            _ => {
                encoded.push('%');
                encoded.push(char::from(digits[usize::from(byte >> 4)]));
                encoded.push(char::from(digits[usize::from(byte & 0xf)]));
            }
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrubber(secrets: &[&str]) -> Scrubber {
        let secrets: Vec<SecretString> = secrets
            .iter()
            .map(|s| SecretString::from(s.to_string()))
            .collect();
        Scrubber::new(&secrets)
    }

    /// `body` through a fresh scrubber of `secrets`, cut into chunks at `cuts`.
    fn streamed(secrets: &[&str], body: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut streaming = Streaming::new(scrubber(secrets));
        let mut out = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([&body.len()]) {
            out.extend_from_slice(&streaming.push(&body[from..cut]));
            from = cut;
        }
        out.extend_from_slice(&streaming.finish());
        out
    }

    /// A small xorshift: the same chunkings on every run, no crate needed.
    struct Random(u64);

    impl Random {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }
    }

    #[test]
    fn every_form_of_a_secret_is_masked_to_the_same_length_whatever_the_chunks() {
        let key = "sk_live/ab+c\"d\\e f";
        let basic = "dXNlcjpzM2NyZXQtcGFzcw==";
        let body = format!(
            "{{\"error\":\"invalid key {key}\"}} raw {key} json {} slash {} query ?k={} lower {} form {} basic {basic} percent-basic {} end {key}",
            r#"sk_live/ab+c\"d\\e f"#,
            r#"sk_live\/ab+c\"d\\e f"#,
            "sk_live%2Fab%2Bc%22d%5Ce%20f",
            "sk_live%2fab%2bc%22d%5ce%20f",
            "sk_live%2Fab%2Bc%22d%5Ce+f",
            "dXNlcjpzM2NyZXQtcGFzcw%3D%3D",
        );
        let body = body.as_bytes();
        let mut random = Random(0x5eed_cafe_f00d_d00d);
        for round in 0..500 {
            let mut cuts: Vec<usize> = (0..random.below(12))
                .map(|_| random.below(body.len() + 1))
                .collect();
            if round % 50 == 0 {
                // One byte at a time, now and then.
                cuts = (1..body.len()).collect();
            }
            cuts.sort_unstable();
            let out = streamed(&[key, basic], body, &cuts);
            assert_eq!(out.len(), body.len(), "chunks at {cuts:?}");
            let text = String::from_utf8(out).unwrap();
            for leaked in ["sk_live", "ab+c", "ab%2", "dXNlcjpz", "GFzcw"] {
                assert!(
                    !text.contains(leaked),
                    "{leaked} at chunks {cuts:?}: {text}"
                );
            }
            assert!(text.starts_with("{\"error\":\"invalid key ****"), "{text}");
            assert!(
                text.contains(" end ****") && text.contains(" raw ****"),
                "{text}"
            );
        }
    }

    #[test]
    fn overlapping_secrets_are_both_masked_across_a_boundary() {
        // The first ends inside the second: masking one must not leave the
        // other's tail for the next chunk to show.
        let (first, second) = ("abcdefgh12", "gh12345678");
        let body = b"--abcdefgh12345678--";
        for cut in 0..=body.len() {
            let out = streamed(&[first, second], body, &[cut]);
            assert_eq!(out, b"--****************--", "cut at {cut}");
        }
    }

    #[test]
    fn a_chunk_goes_on_whole_unless_it_ends_with_the_start_of_a_secret() {
        let mut streaming = Streaming::new(scrubber(&["sk_live_0123456789"]));
        // An event of a feed: nothing in it could begin the key.
        assert_eq!(
            &streaming.push(b"data: {\"n\": 1}\n\n")[..],
            b"data: {\"n\": 1}\n\n"
        );
        // Its end could: only that end waits.
        assert_eq!(&streaming.push(b"key sk_li")[..], b"key ");
        assert_eq!(
            &streaming.push(b"ve_0123456789 ok")[..],
            b"****************** ok"
        );
        assert_eq!(&streaming.push(b"last sk")[..], b"last ");
        assert_eq!(&streaming.finish()[..], b"sk");
    }

    #[test]
    fn values_shorter_than_the_minimum_are_left_alone() {
        let scrubber = scrubber(&["1234567", ""]);
        assert!(scrubber.is_empty());
        assert_eq!(streamed(&["1234567"], b"id 1234567", &[3]), b"id 1234567");
        let scrubber = self::scrubber(&["12345678"]);
        assert_eq!(scrubber.masked(b"id 12345678").unwrap(), b"id ********");
        assert!(scrubber.masked(b"id 1234567").is_none());
    }

    #[test]
    fn a_header_holding_a_secret_is_masked_and_one_named_by_it_dropped() {
        let scrubber = scrubber(&["sk_live_0123456789"]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-echo",
            HeaderValue::from_static("Bearer sk_live_0123456789"),
        );
        headers.append("x-echo", HeaderValue::from_static("plain"));
        headers.append("x-sk_live_0123456789", HeaderValue::from_static("1"));
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        let kept = scrubber.headers(headers);
        let echoes: Vec<&str> = kept
            .get_all("x-echo")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            echoes,
            [format!("Bearer {}", "*".repeat(18)).as_str(), "plain"]
        );
        assert!(kept.get("x-echo").unwrap().is_sensitive());
        assert!(kept.get("x-sk_live_0123456789").is_none());
        assert_eq!(kept["content-type"], "text/plain");
    }

    #[test]
    fn the_debug_of_a_scrubber_shows_no_secret() {
        let debug = format!("{:?}", scrubber(&["sk_live_0123456789"]));
        assert!(!debug.contains("sk_live"), "{debug}");
        assert!(debug.contains("forms"), "{debug}");
    }
}

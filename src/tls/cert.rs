//! The one thing sessiond reads from a certificate itself: the subject's Common Name, which
//! `tls-auth-clients-user CN` maps to an ACL user. rustls has already verified the
//! certificate (chain, validity, key usage) when this runs; this walks its DER just far
//! enough to find the subject, with every length checked against the bytes that are there.

/// One DER element: its tag, its contents, and what follows it.
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// 2.5.4.3, commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The subject's Common Name of a DER certificate, if it has one in a string type.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // version [0], optional.
    if rest.first() == Some(&0xa0) {
        rest = element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = element(rest)?.2;
    }
    let (tag, subject, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = subject;
    let mut found = None;
    while !rdns.is_empty() {
        let (tag, set, next) = element(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        let mut attrs = set;
        while !attrs.is_empty() {
            let (tag, attr, next) = element(attrs)?;
            attrs = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = element(attr)?;
            if tag == OID && oid == CN_OID {
                let (vtag, text, _) = element(value)?;
                // UTF8String, PrintableString, IA5String, T61String.
                if matches!(vtag, 0x0c | 0x13 | 0x16 | 0x14) {
                    // The last CN wins, as OpenSSL's lookup in Redis does not define an
                    // order either; certificates with several are unusual.
                    found = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_garbage_input_gives_none() {
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = common_name(&junk);
        }
    }
}

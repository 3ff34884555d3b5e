//! Just enough DER to read a certificate's `notAfter`: the one field a
//! monitor needs, without pulling in a full X.509 parser.

/// Read one DER TLV at the start of `input`: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
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

/// The certificate's `notAfter` as Unix seconds.
pub fn not_after_unix(der: &[u8]) -> Option<i64> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    let (0x02, _, r) = tlv(rest)? else {
        return None;
    }; // serial
    let (0x30, _, r) = tlv(r)? else { return None }; // signature algorithm
    let (0x30, _, r) = tlv(r)? else { return None }; // issuer
    let (0x30, validity, _) = tlv(r)? else {
        return None;
    };
    let (_, _, r) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(r)?;
    parse_time(tag, time)
}

fn parse_time(tag: u8, t: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(t).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let num = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, h, m, sec) = (num(0)?, num(2)?, num(4)?, num(6)?, num(8)?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day)? * 86_400 + h * 3600 + m * 60 + sec)
}

/// Days since 1970-01-01 of a Gregorian date, `None` for a date that does
/// not exist (month 13, February 30). The time of day stays our
/// arithmetic: a leap second (`:60`) is valid in a certificate.
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    let date = jiff::civil::Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()?;
    let span = date.since(jiff::civil::date(1970, 1, 1)).ok()?;
    Some(i64::from(span.get_days()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(2023, 2, 29), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x18, b"20381319031408Z"), None);
        assert_eq!(parse_time(0x18, b"20380230000000Z"), None);
        assert_eq!(parse_time(0x17, b"161231235960Z"), Some(1_483_228_800));
    }

    #[test]
    fn reads_not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["example.org".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 14);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after_unix(cert.der()),
            Some(days_from_civil(2031, 7, 14).unwrap() * 86_400)
        );
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(not_after_unix(b""), None);
        assert_eq!(not_after_unix(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        for n in 0..64u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ n).collect();
            let _ = not_after_unix(&v);
        }
    }
}

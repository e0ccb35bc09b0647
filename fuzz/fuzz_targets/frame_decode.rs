//! Arbitrary bytes through both directions of the milter codec: decoding
//! never panics, and whatever decodes re-encodes to a packet that decodes
//! to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use outscore::milter::frame::{decode_command, decode_reply, encode_command, encode_reply};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(command)) = decode_command(&mut buf, 1 << 20) {
        let mut wire = BytesMut::new();
        encode_command(&command, &mut wire);
        let again = decode_command(&mut wire, 1 << 20).expect("re-encoded command decodes");
        assert_eq!(again.as_ref(), Some(&command));
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(reply)) = decode_reply(&mut buf, 1 << 20) {
        let mut wire = BytesMut::new();
        encode_reply(&reply, &mut wire);
        let again = decode_reply(&mut wire, 1 << 20).expect("re-encoded reply decodes");
        assert_eq!(again.as_ref(), Some(&reply));
    }
});

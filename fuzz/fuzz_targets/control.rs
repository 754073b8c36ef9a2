//! Control messages (control::decode, exactly to the frame's end) for
//! every request and response type on the three sockets: init, dns and
//! mail. The first byte picks the type; the rest is a frame body. What
//! decodes encodes into a frame within MAX_FRAME_BYTES (when the body
//! was), and that frame decodes to a message that encodes to the very
//! same bytes; trailing bytes are always refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pocobelle::control::{self, ControlError, MAX_FRAME_BYTES};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn check<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    let msg = control::decode::<T>(body).ok()?;
    let frame = match control::encode(&msg) {
        Ok(f) => f,
        Err(ControlError::TooLarge(_)) => {
            assert!(body.len() > MAX_FRAME_BYTES);
            return None;
        }
        Err(e) => panic!("a decoded message does not encode: {e}"),
    };
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let again: T = control::decode(&frame[4..]).expect("our own frame decodes");
    let frame2 = control::encode(&again).expect("encodes again");
    assert_eq!(frame, frame2, "encoding is not a fixed point");
    let mut longer = frame[4..].to_vec();
    longer.push(0);
    assert!(matches!(
        control::decode::<T>(&longer),
        Err(ControlError::Trailing(1))
    ));
    Some(again)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if body.len() > MAX_FRAME_BYTES {
        return; // read_msg refuses such a frame before decoding
    }
    use pocobelle::dns::stats as dns;
    use pocobelle::init::control as init;
    use pocobelle::mail::service as mail;
    match which % 6 {
        0 => drop(check::<init::Request>(body)),
        1 => {
            // `pocobelle status` prints what init answered.
            if let Some(init::Response::Status(r)) = check::<init::Response>(body) {
                let _ = init::render(&r);
            }
        }
        2 => drop(check::<dns::Request>(body)),
        3 => drop(check::<dns::Response>(body)),
        4 => drop(check::<mail::Request>(body)),
        _ => drop(check::<mail::Response>(body)),
    }
});

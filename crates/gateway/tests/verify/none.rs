//! `verify = "none"`: accepted as it is, within the size limit.

use fanout_gateway::Rejection;

use super::{verifier, Request, NOW};

#[test]
fn everything_within_the_limit_is_accepted_and_nothing_over_it() {
    let verifier = verifier("verify = \"none\"\nmax_body_bytes = 8");
    assert_eq!(verifier.scheme(), fanout_gateway::Scheme::None);
    let request = Request::new(&[], b"12345678");
    assert_eq!(request.verify(&verifier, NOW).unwrap().body(), b"12345678");
    let request = Request::new(&[], b"123456789");
    assert_eq!(request.verify(&verifier, NOW).unwrap_err(), Rejection::BodyTooLarge { limit: 8, actual: 9 });
}

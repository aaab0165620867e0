//! Unit tests of the interpreter's helpers.

use super::functions::format_double;

#[test]
fn formats_doubles_like_the_reference_implementation() {
    assert_eq!(format_double(123.456), "123.456");
    assert_eq!(format_double(-4.5e-3), "-0.0045");
    assert_eq!(format_double(1e100), "1e+100");
    assert_eq!(format_double(1.5), "1.5");
    assert_eq!(format_double(1e6), "1000000");
    assert_eq!(format_double(1e-5), "1e-05");
}

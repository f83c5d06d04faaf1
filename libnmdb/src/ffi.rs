//! The C boundary: the panic guard every export runs in, and the checks
//! that turn C pointers and sizes into Rust values.
//!
//! No panic may unwind into C (since Rust 1.81 that aborts the caller's
//! process), so every exported function body is one call to [`guard`] or
//! [`guard_by`]; `tests/libnmdb_exports.rs` checks that by reading
//! `lib.rs`. Pointers are checked before any slice is made: a NULL pointer
//! with a non-zero size, or a size over the protocol limit, is an error
//! return and never a dereference.

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nmdb_proto::MAX_DATA_SIZE;

use crate::error::{self, Error};
use crate::handle::Handle;

/// Runs an export's body; an error or a panic becomes `on_error` (the
/// function's documented error value) and is recorded for
/// `nmdb_last_error()`.
pub fn guard<T: Copy>(on_error: T, body: impl FnOnce() -> Result<T, Error>) -> T {
    guard_by(|_| on_error, body)
}

/// Like [`guard`], for functions whose error value depends on the error.
pub fn guard_by<T>(on_error: impl Fn(&Error) -> T, body: impl FnOnce() -> Result<T, Error>) -> T {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or(Err(Error::Panic));
    match result {
        Ok(v) => v,
        Err(e) => {
            error::record(&e);
            on_error(&e)
        }
    }
}

/// The handle behind a C pointer.
///
/// # Safety
/// `db` is NULL or a pointer returned by `nmdb_init()` and not yet freed.
pub unsafe fn handle<'a>(db: *const Handle) -> Result<&'a Handle, Error> {
    db.as_ref().ok_or(Error::NullHandle)
}

/// A caller's key or value. Size 0 gives an empty slice whatever the
/// pointer; the size limit is checked before the memory is touched.
///
/// # Safety
/// Unless NULL, `ptr` points to `len` readable bytes.
pub unsafe fn input<'a>(ptr: *const u8, len: usize, what: &'static str) -> Result<&'a [u8], Error> {
    if len == 0 {
        return Ok(&[]);
    }
    if len > MAX_DATA_SIZE {
        return Err(Error::TooLarge {
            what,
            size: len,
            limit: MAX_DATA_SIZE,
        });
    }
    if ptr.is_null() {
        return Err(Error::NullPointer(what));
    }
    Ok(std::slice::from_raw_parts(ptr, len))
}

/// A caller's host name.
///
/// # Safety
/// Unless NULL, `ptr` points to a NUL-terminated string.
pub unsafe fn c_str<'a>(ptr: *const c_char, what: &'static str) -> Result<&'a CStr, Error> {
    if ptr.is_null() {
        return Err(Error::NullPointer(what));
    }
    Ok(CStr::from_ptr(ptr))
}

/// A caller's output buffer. Only the bytes actually produced are written;
/// no slice over the whole (possibly huge, possibly partly invalid) buffer
/// is ever made.
pub struct OutBuf {
    ptr: *mut u8,
    cap: usize,
    what: &'static str,
}

impl OutBuf {
    /// # Safety
    /// Unless NULL, `ptr` points to `cap` writable bytes that stay valid
    /// while the `OutBuf` is used.
    pub unsafe fn new(ptr: *mut u8, cap: usize, what: &'static str) -> Result<OutBuf, Error> {
        if ptr.is_null() && cap != 0 {
            return Err(Error::NullPointer(what));
        }
        Ok(OutBuf { ptr, cap, what })
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Copies `data` to the start of the buffer; returns its length.
    pub fn fill(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.write_at(0, data)?;
        Ok(data.len())
    }

    /// Copies `data` at `offset`, if it fits.
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let need = offset.saturating_add(data.len());
        if need > self.cap {
            return Err(Error::BufferTooSmall {
                need,
                have: self.cap,
            });
        }
        if !data.is_empty() {
            // SAFETY: need <= cap, so [offset, offset + len) lies inside the
            // caller's buffer (non-NULL, since cap >= need > 0); `data` comes
            // from our own buffers and cannot overlap it.
            unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len())
            };
        }
        Ok(())
    }

    /// For error messages.
    pub fn name(&self) -> &'static str {
        self.what
    }
}

/// Writes through an optional C out-pointer.
///
/// # Safety
/// Unless NULL, `ptr` points to a writable `T`.
pub unsafe fn set_out<T>(ptr: *mut T, value: T) {
    if let Some(slot) = ptr.as_mut() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_error_value_and_is_recorded() {
        let r = guard(-7, || -> Result<i32, Error> { panic!("boom") });
        assert_eq!(r, -7);
        assert!(error::last_message().contains("panic"));
    }

    #[test]
    fn errors_choose_their_value_with_guard_by() {
        let r = guard_by(
            |e| if matches!(e, Error::NoServer) { -4 } else { -1 },
            || Err(Error::NoServer),
        );
        assert_eq!(r, -4);
    }

    #[test]
    fn null_with_size_is_refused_and_size_zero_needs_no_pointer() {
        unsafe {
            assert!(matches!(
                input(std::ptr::null(), 1, "key"),
                Err(Error::NullPointer("key"))
            ));
            assert_eq!(input(std::ptr::null(), 0, "key").unwrap(), b"");
            assert!(OutBuf::new(std::ptr::null_mut(), 5, "val").is_err());
            assert!(OutBuf::new(std::ptr::null_mut(), 0, "val").is_ok());
        }
    }

    #[test]
    fn oversized_input_is_refused_before_reading_it() {
        // A bogus pointer: the size check must come first.
        let bogus = 0x10 as *const u8;
        let r = unsafe { input(bogus, MAX_DATA_SIZE + 1, "value") };
        assert!(matches!(r, Err(Error::TooLarge { .. })));
    }

    #[test]
    fn output_that_does_not_fit_is_not_written() {
        let mut buf = [0xaau8; 4];
        let mut out = unsafe { OutBuf::new(buf.as_mut_ptr(), 4, "val") }.unwrap();
        assert!(matches!(
            out.fill(b"12345"),
            Err(Error::BufferTooSmall { need: 5, have: 4 })
        ));
        assert_eq!(buf, [0xaa; 4]);
        let mut out = unsafe { OutBuf::new(buf.as_mut_ptr(), 4, "val") }.unwrap();
        assert_eq!(out.fill(b"12").unwrap(), 2);
        out.write_at(2, b"34").unwrap();
        assert_eq!(&buf, b"1234");
    }
}

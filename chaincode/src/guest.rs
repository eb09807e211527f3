//! The wasm side of the boundary: the exports behind [`crate::export!`] and a [`Context`] that
//! talks to the host. Pointers and lengths live only here, never in contract code.

use alloc::string::String;
use alloc::vec::Vec;

use crate::abi::{self, Creator, HostRequest, HostResponse, Invocation, InvokeResult};
use crate::{Context, Contract, Error, Page};

/// The module's allocator. Every invocation runs in a fresh instance that the peer throws away
/// afterwards, so nothing needs to be reused: allocation bumps a pointer, and freeing gives back
/// only the most recent block (the common temporary-buffer pattern), which a `realloc` of the
/// most recent block also grows in place. It uses the memory between the heap base and the
/// module's initial size before it ever grows memory (each `memory.grow` costs the host a change
/// of page protection), and grows by at least 256 KiB at a time. A contract that needs more than
/// the peer's memory cap fails with an out-of-memory error, as with any allocator.
struct BumpAllocator;

/// Bump state: the next free byte and the end of memory (0 until the first allocation). Wasm
/// chaincode is single-threaded.
static mut BUMP: (usize, usize) = (0, 0);

const PAGE: usize = 65_536;
const MIN_GROW_PAGES: usize = 4;

unsafe extern "C" {
    /// Where the linker put the end of static data: the heap starts here.
    static __heap_base: u8;
}

// SAFETY: single-threaded (wasm32 without threads); every block handed out lies inside linear
// memory below the current size and is never handed out twice while live.
/// Makes memory reach at least `end`, growing it by at least [`MIN_GROW_PAGES`]; false when the
/// memory cap refuses.
fn reach(state: &mut (usize, usize), end: usize) -> bool {
    if end <= state.1 {
        return true;
    }
    let needed = (end - state.1).div_ceil(PAGE);
    for pages in [needed.max(MIN_GROW_PAGES), needed] {
        if core::arch::wasm32::memory_grow(0, pages) != usize::MAX {
            state.1 = state.1.saturating_add(pages * PAGE);
            return true;
        }
    }
    false
}

unsafe impl core::alloc::GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        // SAFETY: single-threaded access to the bump state (see above).
        let state = unsafe { &mut *core::ptr::addr_of_mut!(BUMP) };
        if state.0 == 0 {
            state.0 = core::ptr::addr_of!(__heap_base) as usize;
            state.1 = core::arch::wasm32::memory_size(0).saturating_mul(PAGE);
        }
        let align = layout.align().max(1);
        let Some(start) = state.0.checked_add(align - 1).map(|p| p & !(align - 1)) else {
            return core::ptr::null_mut();
        };
        let Some(end) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if !reach(state, end) {
            return core::ptr::null_mut();
        }
        state.0 = end;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        // SAFETY: single-threaded access to the bump state.
        let state = unsafe { &mut *core::ptr::addr_of_mut!(BUMP) };
        if ptr as usize + layout.size() == state.0 {
            state.0 = ptr as usize;
        }
    }

    unsafe fn realloc(
        &self,
        ptr: *mut u8,
        layout: core::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        if new_size <= layout.size() {
            return ptr;
        }
        {
            // SAFETY: single-threaded access to the bump state.
            let state = unsafe { &mut *core::ptr::addr_of_mut!(BUMP) };
            // The most recent block grows in place, growing memory if it must.
            if ptr as usize + layout.size() == state.0
                && let Some(end) = (ptr as usize).checked_add(new_size)
                && reach(state, end)
            {
                state.0 = end;
                return ptr;
            }
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller's contract).
        let new_layout =
            unsafe { core::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least min(old, new) bytes long, and distinct.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator;

#[link(wasm_import_module = "mercato")]
unsafe extern "C" {
    fn host_call(ptr: *const u8, len: u32) -> i32;
    fn host_take(ptr: *mut u8);
}

/// `mercato_alloc`: a buffer the host fills. The instance lives for one invocation, so buffers
/// are never freed.
pub fn alloc(len: u32) -> u32 {
    let mut buf = Vec::<u8>::with_capacity(len as usize);
    let ptr = buf.as_mut_ptr();
    core::mem::forget(buf);
    ptr as u32
}

/// `mercato_abi_version`.
pub fn abi_version() -> i32 {
    abi::ABI_VERSION
}

fn call(request: &HostRequest) -> Result<HostResponse, Error> {
    let bytes = request.encode();
    // SAFETY: the host reads `len` bytes at `ptr`, which `bytes` owns for the whole call.
    let n = unsafe { host_call(bytes.as_ptr(), bytes.len() as u32) };
    if n < 0 {
        return Err(Error::msg("the host refused the request"));
    }
    let mut buf = alloc::vec![0u8; n as usize];
    // SAFETY: the host writes exactly the `n` bytes it announced into `buf`.
    unsafe { host_take(buf.as_mut_ptr()) };
    match HostResponse::decode(&buf) {
        Ok(HostResponse::Error(message)) => Err(Error::msg(message)),
        Ok(response) => Ok(response),
        Err(e) => Err(Error::msg(alloc::format!("{e}"))),
    }
}

fn done(request: HostRequest) -> Result<(), Error> {
    match call(&request)? {
        HostResponse::Done => Ok(()),
        _ => Err(Error::msg("unexpected host response")),
    }
}

/// Runs a contract for the host: decodes the invocation at `ptr`, dispatches, returns the packed
/// location of the encoded result.
pub fn invoke<C: Contract>(ptr: u32, len: u32) -> i64 {
    // A panic ends the instance with a trap; first tell the host why.
    std::panic::set_hook(alloc::boxed::Box::new(|info| {
        let _ = call(&HostRequest::Log {
            message: alloc::format!("panic: {info}"),
        });
    }));
    // SAFETY: the host wrote `len` bytes into a buffer it got from `alloc`.
    let input = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    let result = match Invocation::decode(input) {
        Ok(invocation) => {
            let args = invocation.args.clone();
            let mut ctx = WasmContext { invocation };
            crate::dispatch::<C>(&mut ctx, &args)
        }
        Err(e) => InvokeResult {
            status: 500,
            message: alloc::format!("{e}"),
            payload: Vec::new(),
        },
    };
    let out = result.encode();
    let packed = abi::pack(out.as_ptr() as u32, out.len() as u32);
    core::mem::forget(out);
    packed
}

struct WasmContext {
    invocation: Invocation,
}

impl Context for WasmContext {
    fn channel(&self) -> &str {
        &self.invocation.channel
    }
    fn txid(&self) -> &str {
        &self.invocation.txid
    }
    fn timestamp(&self) -> (i64, i32) {
        self.invocation.timestamp
    }
    fn creator(&self) -> &Creator {
        &self.invocation.creator
    }
    fn transient(&self, name: &str) -> Option<&[u8]> {
        self.invocation
            .transient
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }
    fn get_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        match call(&HostRequest::Get { key: key.into() })? {
            HostResponse::Value(v) => Ok(v),
            _ => Err(Error::msg("unexpected host response")),
        }
    }
    fn put_state(&mut self, key: &str, value: &[u8]) -> Result<(), Error> {
        done(HostRequest::Put {
            key: key.into(),
            value: value.to_vec(),
        })
    }
    fn delete_state(&mut self, key: &str) -> Result<(), Error> {
        done(HostRequest::Delete { key: key.into() })
    }
    fn get_state_range(
        &mut self,
        start: &str,
        end: &str,
        page_size: u32,
        bookmark: &str,
    ) -> Result<Page, Error> {
        let request = HostRequest::Range {
            start: start.into(),
            end: end.into(),
            limit: page_size,
            bookmark: bookmark.into(),
        };
        match call(&request)? {
            HostResponse::Page { entries, bookmark } => Ok(Page { entries, bookmark }),
            _ => Err(Error::msg("unexpected host response")),
        }
    }
    fn add(&mut self, key: &str, amount: i64, lower_bound: Option<i64>) -> Result<(), Error> {
        done(HostRequest::Add {
            key: key.into(),
            amount,
            lower_bound,
        })
    }
    fn set_event(&mut self, name: &str, payload: &[u8]) -> Result<(), Error> {
        done(HostRequest::SetEvent {
            name: name.into(),
            payload: payload.to_vec(),
        })
    }
    fn invoke_chaincode(
        &mut self,
        chaincode: &str,
        args: &[Vec<u8>],
    ) -> Result<InvokeResult, Error> {
        match call(&HostRequest::Invoke {
            chaincode: chaincode.into(),
            args: args.to_vec(),
        })? {
            HostResponse::Result(r) => Ok(r),
            _ => Err(Error::msg("unexpected host response")),
        }
    }
    fn log(&mut self, message: &str) {
        let _ = call(&HostRequest::Log {
            message: String::from(message),
        });
    }
}

//! Procedural macros of [multiproc](https://docs.rs/multiproc): `#[multiproc::main]` and
//! `#[derive(ShmSafe)]`. Use them through the `multiproc` crate, which re-exports both.

use proc_macro::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, ItemFn, parse_macro_input};

/// Makes `multiproc::init()` the first statement of `main`. It also tells multiproc so
/// before `main` (from an `.init_array` entry), which lets a spawned child run its target
/// after std's runtime start-up, from that `init()`: the same runtime as any program.
///
/// `#[multiproc::main(child_init = setup)]` opens `main` with
/// `multiproc::builder().child_init(setup).init()` instead: `setup`, a `fn()`, runs in
/// every child before its target. It is evaluated as a constant (a path to a function, or
/// a closure that captures nothing): an expression that would run code before `init()`
/// does not compile, as that code would run again in every child, before its dispatch.
///
/// ```ignore
/// #[multiproc::main]
/// fn main() {
///     // processes can be started from here on
/// }
/// ```
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut child_init: Option<syn::Expr> = None;
    let options = syn::meta::parser(|meta| {
        if meta.path.is_ident("child_init") {
            child_init = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("#[multiproc::main] takes only `child_init = function`"))
        }
    });
    parse_macro_input!(attr with options);
    let mut function = parse_macro_input!(item as ItemFn);
    if function.sig.ident != "main" {
        return syn::Error::new(function.sig.ident.span(), "#[multiproc::main] goes on `fn main`")
            .to_compile_error()
            .into();
    }
    if function.sig.asyncness.is_some() {
        return syn::Error::new(
            function.sig.asyncness.span(),
            "#[multiproc::main] needs a plain `fn main`: put it outside the async runtime's attribute, or call multiproc::init() before building the runtime",
        )
        .to_compile_error()
        .into();
    }
    let init: syn::Stmt = match &child_init {
        // A constant: no code of the program runs before `init()` dispatches a spawned
        // child (which trusts `MULTIPROC_BOOT` there), nor once more in every child.
        Some(setup) => syn::parse_quote!({
            const __MULTIPROC_CHILD_INIT: fn() = #setup;
            ::multiproc::builder().child_init(__MULTIPROC_CHILD_INIT).init();
        }),
        None => syn::parse_quote!(::multiproc::init();),
    };
    function.block.stmts.insert(0, init);
    // A prioritised `.init_array` entry runs before every unprioritised one (multiproc's
    // included): it tells multiproc, before a spawned child decides where to dispatch,
    // that `main` opens with `init()`, so the child's target can run from there, after
    // std's runtime start-up. Not in a unit-test build, whose `main` is libtest's.
    quote!(
        #[cfg(not(test))]
        #[allow(unsafe_code)]
        #[used]
        #[unsafe(link_section = ".init_array.00500")]
        static __MULTIPROC_MAIN_DISPATCHES: extern "C" fn() = {
            extern "C" fn __multiproc_main_dispatches() {
                ::multiproc::__private::main_dispatches();
            }
            __multiproc_main_dispatches
        };
        #function
    )
    .into()
}

/// Implements `multiproc::ShmSafe` for a `#[repr(C)]` struct whose fields are all
/// `ShmSafe` and which has no `Drop` of its own, so that it can live in `Value`, `Array`,
/// `RawValue` and `RawArray`.
#[proc_macro_derive(ShmSafe)]
pub fn derive_shm_safe(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (fields, members) = match &input.data {
        Data::Struct(s) => {
            (s.fields.iter().map(|f| f.ty.clone()).collect::<Vec<_>>(), s.fields.members().collect::<Vec<_>>())
        }
        Data::Enum(_) => {
            return syn::Error::new(
                input.span(),
                "ShmSafe cannot be derived for enums: a reader racing a writer of another process could see an invalid discriminant",
            )
            .to_compile_error()
            .into();
        }
        Data::Union(_) => {
            return syn::Error::new(input.span(), "ShmSafe cannot be derived for unions").to_compile_error().into();
        }
    };
    let mut repr_c = false;
    let mut too_aligned = None;
    let mut packed = None;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("C") || meta.path.is_ident("transparent") {
                repr_c = true;
            }
            if meta.path.is_ident("packed") {
                packed = Some(meta.path.span());
            }
            if meta.path.is_ident("align") && meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let align: syn::LitInt = content.parse()?;
                if align.base10_parse::<u64>().is_ok_and(|a| a > MAX_ALIGN) {
                    too_aligned = Some(align);
                }
                return Ok(());
            }
            if meta.input.peek(syn::token::Paren) {
                let content;
                syn::parenthesized!(content in meta.input);
                let _: proc_macro2::TokenStream = content.parse()?;
            }
            Ok(())
        });
    }
    if !repr_c {
        return syn::Error::new(name.span(), "ShmSafe needs a fixed layout: add #[repr(C)] to the struct")
            .to_compile_error()
            .into();
    }
    if let Some(align) = too_aligned {
        return syn::Error::new(align.span(), TOO_ALIGNED).to_compile_error().into();
    }
    if let Some(span) = packed {
        return syn::Error::new(
            span,
            "ShmSafe types cannot be packed: their fields are read and written with atomic accesses, which need aligned fields",
        )
        .to_compile_error()
        .into();
    }
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(::multiproc::ShmSafe));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let mut predicates: Vec<proc_macro2::TokenStream> =
        where_clause.map(|w| w.predicates.iter().map(|p| quote!(#p)).collect()).unwrap_or_default();
    for ty in &fields {
        predicates.push(quote!(#ty: ::multiproc::ShmSafe));
    }
    // The `align` attribute is checked above; the fields' own alignment (each ShmSafe, so at
    // most 64) bounds the rest. A non-generic struct is checked once more by the compiler.
    let align_check = input.generics.params.is_empty().then(|| {
        quote!(
            const _: () = ::core::assert!(::core::mem::align_of::<#name>() <= #MAX_ALIGN as usize, #TOO_ALIGNED);
            const _: () = ::core::assert!(!::core::mem::needs_drop::<#name>(), #HAS_DROP);
        )
    });
    quote!(
        // SAFETY: a #[repr(C)] struct whose every field is ShmSafe (the where clause makes
        // the compiler check it), aligned to at most 64 bytes (checked above), has the
        // properties ShmSafe asks for.
        unsafe impl #impl_generics ::multiproc::ShmSafe for #name #ty_generics
        where #(#predicates,)*
        {
            // Field by field, so that padding between them is never read as an integer.
            #[inline]
            unsafe fn load_racy(src: *const Self) -> Self {
                // A generic struct's `Drop` is seen here, where it is used.
                const { ::core::assert!(!::core::mem::needs_drop::<Self>(), #HAS_DROP) };
                let mut out = ::core::mem::MaybeUninit::<Self>::uninit();
                let dst = out.as_mut_ptr();
                // SAFETY: each field of `src` is valid and aligned as the whole is (the
                // caller's contract, and the struct is not packed); every field of `out`
                // is written before `assume_init`.
                unsafe {
                    #(
                        ::core::ptr::addr_of_mut!((*dst).#members)
                            .write(<#fields as ::multiproc::ShmSafe>::load_racy(::core::ptr::addr_of!((*src).#members)));
                    )*
                    out.assume_init()
                }
            }

            #[inline]
            unsafe fn store_racy(dst: *mut Self, value: Self) {
                const { ::core::assert!(!::core::mem::needs_drop::<Self>(), #HAS_DROP) };
                let value = ::core::mem::ManuallyDrop::new(value);
                // SAFETY: as in `load_racy`; each field is read once out of `value`, which
                // is never dropped (a ShmSafe type has no drop glue).
                unsafe {
                    #(
                        <#fields as ::multiproc::ShmSafe>::store_racy(
                            ::core::ptr::addr_of_mut!((*dst).#members),
                            ::core::ptr::read(&value.#members),
                        );
                    )*
                }
            }
        }
        #align_check
    )
    .into()
}

/// The family heap's alignment: the most a ShmSafe type may ask for.
const MAX_ALIGN: u64 = 64;
/// Rule 2 of `ShmSafe`: the fields are checked by their own bounds, the struct's own `Drop`
/// by `needs_drop`.
const HAS_DROP: &str = "ShmSafe types cannot have a destructor: shared memory is reclaimed without running destructors (remove the `Drop` impl)";
const TOO_ALIGNED: &str =
    "ShmSafe types may be aligned to at most 64 bytes: the family heap places objects at 64-byte boundaries";

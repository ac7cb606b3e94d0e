//! Procedural macros re-exported by the `fanout` crate; use them through it (`fanout::migrations!`),
//! not from here: their expansions name `::fanout`.

use proc_macro::TokenStream;
use proc_macro2::{Ident, Punct, Spacing, Span, TokenStream as TokenStream2, TokenTree};

/// Embeds the SQL migrations of a directory (default `./migrations`; a path relative to the
/// crate's `Cargo.toml`, starting with `./`) as a `fanout::sqlx::migrate::Migrator`, exactly as `sqlx::migrate!` does, but
/// through the sqlx that `fanout` re-exports: a team's crate names `fanout`, not a matching sqlx.
///
/// Like `sqlx::migrate!`, it cannot tell cargo about a file added later: keep a `build.rs` with
/// `println!("cargo:rerun-if-changed=migrations");`.
#[proc_macro]
pub fn migrations(input: TokenStream) -> TokenStream {
    let dir = if input.is_empty() {
        syn::LitStr::new("./migrations", Span::call_site())
    } else {
        match syn::parse::<syn::LitStr>(input) {
            Ok(dir) => dir,
            Err(e) => return e.to_compile_error().into(),
        }
    };
    match sqlx_macros_core::migrate::expand_migrator_from_lit_dir(dir) {
        Ok(tokens) => through_fanout(tokens).into(),
        Err(e) => match e.downcast_ref::<syn::Error>() {
            Some(error) => error.to_compile_error().into(),
            None => {
                let message = format!("fanout::migrations!: {e}");
                quote::quote!(::core::compile_error!(#message)).into()
            }
        },
    }
}

/// Rewrites sqlx's absolute paths (`::sqlx::...`) to `::fanout::sqlx::...`, everywhere in the
/// expansion, groups included.
fn through_fanout(tokens: TokenStream2) -> TokenStream2 {
    let mut out = TokenStream2::new();
    for tree in tokens {
        match tree {
            TokenTree::Ident(ident) if ident == "sqlx" => {
                out.extend([
                    TokenTree::Ident(Ident::new("fanout", ident.span())),
                    TokenTree::Punct(Punct::new(':', Spacing::Joint)),
                    TokenTree::Punct(Punct::new(':', Spacing::Alone)),
                    TokenTree::Ident(ident),
                ]);
            }
            TokenTree::Group(group) => {
                let mut rewritten =
                    proc_macro2::Group::new(group.delimiter(), through_fanout(group.stream()));
                rewritten.set_span(group.span());
                out.extend([TokenTree::Group(rewritten)]);
            }
            other => out.extend([other]),
        }
    }
    out
}

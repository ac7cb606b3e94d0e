//! The domain's topic names.

/// Where `PostPublished` events go.
pub const POST_PUBLISHED: &str = "post.published";

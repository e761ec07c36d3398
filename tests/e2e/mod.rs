//! Parts of the end-to-end tests, split by topic.

pub mod flood;
pub mod restart;
pub mod restore;
pub mod suppression;

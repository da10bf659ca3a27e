//! `sqlx::migrate!` embeds `migrations/` at compile time: rebuild when a migration is added or
//! changed (sqlx's own advice; otherwise a new file goes unseen until some source file changes).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

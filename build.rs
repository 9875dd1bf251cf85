// Migrations are embedded by `sqlx::migrate!`, which cannot see new files by itself.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

//! Namespace traversal (directories by inode number): placeholder until the
//! extraction work lands.

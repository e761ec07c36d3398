//! tokio driver for one BGP session. (To be implemented.)

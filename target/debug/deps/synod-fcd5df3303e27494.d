/work/main/target/debug/deps/synod-fcd5df3303e27494.d: src/main.rs

/work/main/target/debug/deps/synod-fcd5df3303e27494: src/main.rs

src/main.rs:

use super::*;

/// A tunnel's task is the size of this future for as long as the tunnel is open. With the
/// set-up (routing, the hello, the judging) inlined it was 4,336 bytes, 1,896 with it boxed
/// apart: a generous bound, so that a regression trips it and the compiler's layout not.
#[tokio::test]
async fn a_connection_task_stays_small() {
    let config = Arc::new(crate::config::Config::embedded().expect("embedded policy"));
    let entry = Arc::new(Entry::new(&config.listen[0]).expect("entry"));
    let ctx = Context {
        config,
        interceptor: None,
        draining: Default::default(),
        force_close: Default::default(),
        metrics: Default::default(),
        shares: Default::default(),
        auth: Default::default(),
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let peer = stream.local_addr().unwrap();
    let task = handle(stream, peer, entry, ctx);
    let size = std::mem::size_of_val(&task);
    assert!(size <= 2560, "a connection's future is {size} bytes");
}

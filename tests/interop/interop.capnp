# The schema both interop peers speak: Granary's C RPC on one side, the C++
# reference (libcapnp-rpc) on the other. Each method exercises one part of
# the protocol; the comments say which.
@0xb9d1351b9b818e36;

interface Interop @0xb142475a3f0e501d {
  ping @0 (n :UInt64) -> (n :UInt64);
  # Returns n + 1: plain call and return; the benchmark's ping-pong.

  echo @1 (text :Text) -> (text :Text);

  fail @2 (reason :Text) -> ();
  # Always throws a "failed" exception whose reason is `reason`.

  hang @3 () -> ();
  # Never returns; counts its own cancellation (Finish before Return).

  canceledCount @4 () -> (count :UInt32);

  newCounter @5 (start :Int64) -> (counter :Counter);
  # Returns a capability; calls made on the result before it comes back are
  # pipelined (the Granary server can be told to answer from a timer, so that
  # they must wait in its queue).

  callBack @6 (cb :Callback, n :UInt32) -> (sum :Int64);
  # Calls cb.call(i) for i in [0, n) one after the other and sums the results:
  # a capability passed from caller to callee.

  write @7 (data :Data) -> stream;
  # A streaming method: the caller keeps a bounded number of bytes in flight.

  writeDone @8 () -> (bytes :UInt64, calls :UInt32);
  # Totals of the write() calls received so far.

  add @9 (counter :Counter, by :Int64) -> (value :Int64);
  # Calls counter.inc(by): the caller passes back a capability that the
  # callee hosts (receiverHosted) or a promised answer (receiverAnswer).

  disconnectMe @10 () -> ();
  # The callee drops the connection instead of returning.

  notImplemented @11 () -> ();
  # Neither side implements this; calling it yields "unimplemented".

  liveObjects @12 () -> (count :UInt32);
  # Counter and Callback objects this side has made and not yet destroyed.

  reflect @13 (cb :Callback) -> (cb :Callback);
  # Returns the capability it was given. Calls the caller pipelines on the
  # result go to the callee and come back; once the caller learns the result
  # is its own object, new calls must wait behind a Disembargo so that they
  # do not overtake those (a Callback checks that its calls come in order).

  promiseCounter @14 (start :Int64) -> (counter :Counter);
  # Like newCounter, but the counter returned is still a promise (the result
  # of a call the callee made to itself and pipelined): it travels as a
  # senderPromise, and a Resolve follows once it settles.
}

interface Counter @0xfb8261102c30f9f2 {
  inc @0 (by :Int64) -> (value :Int64);
}

interface Callback @0xd4f1ffd5f37d78e2 {
  call @0 (i :UInt32) -> (r :Int64);
}

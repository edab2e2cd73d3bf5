# The benchmark message: a batch of WebSession-style HTTP requests, each with
# headers, cookies and a body, as the HTTP bridge would pass them to grains.
@0xe3c2b1a0f9d8c7b7;

enum Method {
  get @0;
  post @1;
  put @2;
  delete @3;
}

struct Header {
  name @0 :Text;
  value @1 :Text;
}

struct Request {
  method @0 :Method;
  path @1 :Text;
  headers @2 :List(Header);
  cookies @3 :List(Text);
  body @4 :Data;
  contentLength @5 :UInt64;
  keepAlive @6 :Bool;
  etag @7 :Text;
}

struct Batch {
  requests @0 :List(Request);
  sequence @1 :UInt64;
}

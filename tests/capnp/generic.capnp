# Sandstorm-like features for capnpc-c: generics, AnyPointer, interfaces with
# implicit and explicit param structs, inheritance, annotations, nested types,
# and an import.
@0xb0a8f2e4c6d19a37;

using Test = import "test.capnp";
using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("granary::test");

annotation note @0xe1d2c3b4a5968778 (struct, field, interface, method) :Text;

struct Box(T) {
  value @0 :T;
}

struct Pair(K, V) {
  key @0 :K;
  val @1 :V;
}

struct Handle $note("a handle") {
  inner @0 :Test.Inner;
  box @1 :Box(Text);
  pair @2 :Pair(Test.Inner, Data);
  any @3 :AnyPointer;
  color @4 :Test.Color = green;
}

interface Store(T) $note("a store") {
  get @0 (key :Text) -> (value :T, found :Bool);
  put @1 (key :Text, value :T) -> ();
  watch @2 (watcher :Watcher) -> (handle :Handle);
  interface Watcher {
    changed @0 (key :Text) -> ();
  }
}

interface Base {
  ping @0 () -> (n :UInt32);
}

interface Derived extends(Base) {
  explicit @0 Handle -> Test.Inner $note("explicit");
  getStore @1 () -> (store :Store(Text));
}

# The kinds of untyped pointers, method-level generics, streaming and a
# generic superclass from another file, as Sandstorm's schemas use them.
using Persistent = import "/capnp/persistent.capnp".Persistent;

struct Untyped {
  cap @0 :Capability;
  anyStruct @1 :AnyStruct;
  anyList @2 :AnyList;
  caps @3 :List(Store(Text));
  generic @4 :Box(Box(Data));
}

interface Saveable(Owner) extends(Persistent(Data, Owner)) {
  echo @0 [X] (value :X) -> (value :X);
  write @1 (chunk :Data) -> stream;
  describe @2 () -> Untyped;
}

interface Marker extends(Base, Saveable(Text)) {}

struct Holder {
  marker @0 :Marker;
  markers @1 :List(Marker);
  interface Inside {
    struct Detail {
      depth @0 :UInt8 = 3;
    }
    look @0 (detail :Detail) -> (seen :Bool);
  }
}

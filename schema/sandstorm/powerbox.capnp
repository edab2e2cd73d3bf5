# Granary: descriptors the powerbox matches requests and offers with.
# IDs and ordinals follow Sandstorm's wire format.
@0xf6c200ab14cd53e4;

using Util = import "util.capnp";

struct PowerboxDescriptor @0xedcf0fa3bfc71c58 {
  # What a capability is (or what a request wants): a set of typed tags.
  tags @0 :List(Tag);
  quality @1 :MatchQuality = acceptable;

  struct Tag @0xbe3d16a8df03c418 {
    id @0 :UInt64;        # usually an interface or struct type id
    value @1 :AnyPointer; # null matches anything
  }

  enum MatchQuality @0xbb1afa45d25ce8de {
    acceptable @0;
    preferred @1;
    unacceptable @2;
  }
}

struct PowerboxDisplayInfo @0xa553a209bee32bec {
  title @0 :Util.LocalizedText;
  verbPhrase @1 :Util.LocalizedText;
  description @2 :Util.LocalizedText;
}

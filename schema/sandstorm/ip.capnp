# Granary: IP networking for grains, the part api-session.capnp needs (the
# address type). The network capabilities (IpNetwork, IpInterface, ports)
# come with the powerbox work, with the same IDs.
# IDs and ordinals follow Sandstorm's wire format.
@0xf44732d435305f86;

struct IpAddress @0xeeb98f9937d32c0b {
  # IPv6 as two big-endian halves; IPv4 as IPv4-mapped IPv6.
  lower64 @0 :UInt64;
  upper64 @1 :UInt64;
}

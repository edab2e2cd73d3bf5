# Granary: who a user is, as an app sees it.
# IDs and ordinals follow Sandstorm's wire format.
@0xc822108a5c3d7d25;

using Util = import "util.capnp";

interface Identity @0xc084987aa951dd18 {
  getProfile @0 () -> (profile :Profile);

  struct PowerboxTag @0xf35052cfb1d3bbe8 {
    permissions @0 :List(Bool);
  }
}

struct Profile @0xd3d0c34d7201fcef {
  displayName @0 :Util.LocalizedText;
  preferredHandle @1 :Text;
  picture @2 :Util.StaticAsset;
  pronouns @3 :Pronouns;

  enum Pronouns @0x84752dcf8539ab01 {
    neutral @0;
    male @1;
    female @2;
    robot @3;
  }
}

struct UserInfo @0x94b9d1efb35d11d3 {
  # The visitor of a session; identityId and identity are null when anonymous.
  displayName @0 :Util.LocalizedText;
  deprecatedPermissionsBlob @1 :Data;
  identityId @2 :Data;
  permissions @3 :List(Bool);
  preferredHandle @4 :Text;
  pronouns @5 :Profile.Pronouns;
  pictureUrl @6 :Text;
  identity @7 :Identity;
}

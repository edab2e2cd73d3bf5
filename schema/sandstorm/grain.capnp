# Granary: the grain-facing API, the part package.capnp needs (views, sessions,
# permissions and roles). The rest of grain.capnp (SandstormApi, scheduling,
# sharing links, persistence) is added by the grain API work with the same IDs.
# IDs and ordinals follow Sandstorm's wire format.
@0xc8d91463cfc4fb4a;

using Util = import "util.capnp";
using Powerbox = import "powerbox.capnp";
using Identity = import "identity.capnp";
using Activity = import "activity.capnp";

interface UiView @0xdbb4d798ea67e2e7 {
  # A grain's user interface; the platform opens sessions on it.
  getViewInfo @0 () -> ViewInfo;

  newSession @1 (userInfo :Identity.UserInfo, context :SessionContext,
                 sessionType :UInt64, sessionParams :AnyPointer, tabId :Data)
             -> (session :UiSession);

  newRequestSession @2 (userInfo :Identity.UserInfo, context :SessionContext,
                        sessionType :UInt64, sessionParams :AnyPointer,
                        requestInfo :List(Powerbox.PowerboxDescriptor), tabId :Data)
                    -> (session :UiSession);

  newOfferSession @3 (userInfo :Identity.UserInfo, context :SessionContext,
                      sessionType :UInt64, sessionParams :AnyPointer,
                      offer :Capability, descriptor :Powerbox.PowerboxDescriptor,
                      tabId :Data)
                  -> (session :UiSession);

  struct ViewInfo @0xbc5e354741a8e665 {
    # What the app declares about its view: permissions (indices are stable
    # across versions: apps only append), roles, and powerbox matching.
    permissions @0 :List(PermissionDef);
    roles @1 :List(RoleDef);
    deniedPermissions @2 :List(Bool);
    matchRequests @3 :List(Powerbox.PowerboxDescriptor);
    matchOffers @4 :List(Powerbox.PowerboxDescriptor);
    appTitle @5 :Util.LocalizedText;
    grainIcon @6 :Util.StaticAsset;
    eventTypes @7 :List(Activity.ActivityTypeDef);
  }

  struct PowerboxTag @0x982790c08b1958ec {
    title @0 :Text;
  }
}

interface UiSession @0xf63241ee58b5166f {
  # Concrete sessions extend this (WebSession, ApiSession, ...).
}

interface SessionContext @0xbf3e401d5a63f336 {
  # The platform's side of one session.
  getSharedPermissions @0 () -> (var :Util.Assignable(List(Bool)).Getter);
  tieToUser @1 (cap :Capability, requiredPermissions :List(Bool),
                displayInfo :Powerbox.PowerboxDisplayInfo) -> (tiedCap :Capability);
  offer @2 (cap :Capability, requiredPermissions :List(Bool),
            descriptor :Powerbox.PowerboxDescriptor,
            displayInfo :Powerbox.PowerboxDisplayInfo);
  request @3 (query :List(Powerbox.PowerboxDescriptor), requiredPermissions :List(Bool))
          -> (cap :Capability, descriptor :Powerbox.PowerboxDescriptor);
  fulfillRequest @4 (cap :Capability, requiredPermissions :List(Bool),
                     descriptor :Powerbox.PowerboxDescriptor,
                     displayInfo :Powerbox.PowerboxDisplayInfo);
  close @5 ();
  openView @6 (view :UiView, path :Text = "", newTab :Bool = false);
  claimRequest @7 (requestToken :Text, requiredPermissions :List(Bool)) -> (cap :Capability);
  activity @8 (event :Activity.ActivityEvent);
}

struct PermissionDef @0xf144a5e58889dafb {
  title @0 :Util.LocalizedText;
  description @1 :Util.LocalizedText;
  obsolete @2 :Bool;
  name @3 :Text;
}

struct RoleDef @0xcb3f7064eae4dc5a {
  title @0 :Util.LocalizedText;
  verbPhrase @1 :Util.LocalizedText;
  description @2 :Util.LocalizedText;
  permissions @3 :List(Bool);
  obsolete @4 :Bool;
  default @5 :Bool;
}

interface MainView @0xc277e9822ae2c8fc (AppObjectId) extends(UiView) {
  # What an app exports as its bootstrap on fd 3: its main view, plus the
  # restoring and dropping of objects it hosts (platform-private).
  restore @0 (objectId :AppObjectId) -> (cap :Capability);
  drop @1 (objectId :AppObjectId);
}

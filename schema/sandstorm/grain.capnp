# Granary: the grain-facing API: what an app exports (MainView, a UiView),
# what the platform exports to it (SandstormApi), sessions, permissions and
# roles, sharing, persistence and scheduling.
# IDs and ordinals follow Sandstorm's wire format; the comments are ours.
@0xc8d91463cfc4fb4a;

using Util = import "util.capnp";
using Powerbox = import "powerbox.capnp";
using Identity = import "identity.capnp";
using Activity = import "activity.capnp";

interface SandstormApi @0xd2654fcf2a7002cb (AppObjectId) {
  # The platform's bootstrap capability on a grain's connection.
  deprecatedPublish @0 ();
  deprecatedRegisterAction @1 ();
  shareCap @2 (cap :Capability, displayInfo :Powerbox.PowerboxDisplayInfo)
           -> (sharedCap :Capability, link :SharingLink);
  shareView @3 (view :UiView) -> (sharedView :UiView, link :ViewSharingLink);
  restore @4 (token :Data) -> (cap :Capability);
  drop @5 (token :Data);
  deleted @6 (ref :AppObjectId);
  stayAwake @7 (displayInfo :Activity.NotificationDisplayInfo,
                notification :Activity.OngoingNotification) -> (handle :Util.Handle);
  save @8 (cap :Capability, label :Util.LocalizedText) -> (token :Data);
  backgroundActivity @9 (event :Activity.ActivityEvent);
  getIdentityId @10 (identity :Identity.Identity) -> (id :Data);
  schedule @11 ScheduledJob;
}

struct ScheduledJob @0xa34f0cfe24c69d74 {
  name @0 :Util.LocalizedText;
  callback @1 :Callback;   # must also implement AppPersistent

  schedule :union {
    oneShot :group {
      when @2 :Int64;     # ns since the Unix epoch
      slack @3 :UInt64;   # ns; 0 = an eighth of the time until `when`
    }
    periodic @4 :SchedulingPeriod;
  }

  interface Callback @0xab619ad5a8fb7e11 {
    run @0 () -> (cancelFutureRuns :Bool);
  }
}

const minimumSchedulingSlack :UInt64 = 300000000000;
# Five minutes in ns: the least slack a one-shot job may ask for.

enum SchedulingPeriod @0x8478a37e9456409d {
  hourly @0;
  daily @1;
  monthly @2;
  annually @3;
  weekly @4;
}

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

interface SharingLink @0xc05520c9b0994ad3 {
  getPetname @0 () -> (name :Util.Assignable(Util.LocalizedText));
}

interface ViewSharingLink @0xa4f82f764dc3fee8 extends(SharingLink) {
  getRoleAssignment @0 () -> (var :Util.Assignable(RoleAssignment));

  struct RoleAssignment @0xf020f2be35e8e2b5 {
    union {
      none @0 :Void;        # the default role applies
      allAccess @1 :Void;
      roleId @2 :UInt16;    # index into ViewInfo.roles
    }
    addPermissions @3 :List(Bool);
    removePermissions @4 :List(Bool);
  }
}

struct GrainInfo @0xb5fcc0e153671d68 {
  # What a grain backup records about the grain.
  appId @0 :Text;
  appVersion @1 :UInt32;
  title @2 :Text;
  ownerIdentityId @3 :Text;
  users @4 :List(User);
  originalGrainId @5 :Text;

  struct User @0x9f07b75928ba4e20 {
    identityId @0 :Text;
    credentialIds @1 :List(Text);
    profile @2 :Identity.Profile;
  }
}

interface AppPersistent @0xaffa789add8747b8 (AppObjectId) {
  # Implemented by app objects that can be saved; the platform stores the id.
  save @0 () -> (objectId :AppObjectId, label :Util.LocalizedText);
}

interface MainView @0xc277e9822ae2c8fc (AppObjectId) extends(UiView) {
  # What an app exports as its bootstrap capability.
  restore @0 (objectId :AppObjectId) -> (cap :Capability);
  drop @1 (objectId :AppObjectId);
}

# Granary: activity events and notifications that grains post.
# IDs and ordinals follow Sandstorm's wire format.
@0xa4e001d4cbcf33fa;

using Util = import "util.capnp";
using Identity = import "identity.capnp";

struct ActivityEvent @0xa7c0b6eaa98c6c4b {
  path @0 :Text;
  notification @1 :NotificationDisplayInfo;
  type @2 :UInt16;   # index into ViewInfo.eventTypes
  users @3 :List(User);
  thread @4 :ThreadInfo;

  struct ThreadInfo @0xf3902b5a86ffba44 {
    path @0 :Text;
    title @1 :Util.LocalizedText;
  }

  struct User @0xbb4d119bbcd89677 {
    identity @0 :Identity.Identity;
    mentioned @1 :Bool;
    canView @2 :Bool;
    subscribed @3 :Bool;
  }
}

struct ActivityTypeDef @0xe638de0ad7c89a2b {
  name @0 :Text;
  verbPhrase @1 :Util.LocalizedText;
  description @2 :Util.LocalizedText;

  requiredPermission :union {
    everyone @3 :Void;
    permissionIndex @4 :UInt16;
    explicitList @5 :Void;
  }

  obsolete @6 :Bool;
  notifySubscribers @7 :Bool;
  autoSubscribeToThread @8 :Bool;
  autoSubscribeToGrain @9 :Bool;
  suppressUnread @10 :Bool;
}

struct NotificationDisplayInfo @0xd3b9f2ca42d4f783 {
  caption @0 :Util.LocalizedText;
}

interface NotificationTarget @0xf0f87337d73020f0 {
  addOngoing @0 (displayInfo :NotificationDisplayInfo, notification :OngoingNotification)
             -> (handle :Util.Handle);
}

interface OngoingNotification @0xfe851ddbb88940cd {
  cancel @0 ();
}

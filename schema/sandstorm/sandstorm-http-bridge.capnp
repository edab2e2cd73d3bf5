# Granary: what the HTTP bridge offers the app inside its grain, on the Unix
# socket /tmp/sandstorm-api, and what an app may offer back on it.
# IDs and ordinals follow Sandstorm's wire format; the comments are ours.
@0xac137d236832bb1e;

using Grain = import "grain.capnp";
using Identity = import "identity.capnp";
using Powerbox = import "powerbox.capnp";

interface SandstormHttpBridge @0xad678f0d09bdd98a {
  # The bridge's bootstrap capability on /tmp/sandstorm-api.

  getSandstormApi @0 () -> (api :Grain.SandstormApi);
  # The platform's API, as the platform gave it to the bridge.

  getSessionContext @1 (id :Text) -> (context :Grain.SessionContext);
  # The context of the session whose X-Sandstorm-Session-Id is `id`.

  getSavedIdentity @2 (identityId :Text) -> (identity :Identity.Identity);
  # `identityId` is an X-Sandstorm-User-Id value.

  saveIdentity @3 (identity :Identity.Identity);

  getSessionRequest @4 (id :Text) -> (requestInfo :List(Powerbox.PowerboxDescriptor));
  # What a request session (X-Sandstorm-Session-Type: request) asks for.

  getSessionOffer @5 (id :Text) -> (offer :Capability, descriptor :Powerbox.PowerboxDescriptor);
  # What an offer session was offered.
}

interface AppHooks @0xcb12390f1429f70f (AppObjectId) {
  # The app's own bootstrap on the same socket, when its bridge config sets
  # expectAppHooks.

  getViewInfo @0 () -> Grain.UiView.ViewInfo;
  # Failing with "unimplemented" means: use the config's viewInfo.

  restore @1 (objectId :AppObjectId) -> (cap :Capability);
  drop @2 (objectId :AppObjectId);
}

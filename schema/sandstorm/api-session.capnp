# Granary: HTTP API sessions: a WebSession opened with an API token rather
# than from a browser, with its own type id (session type and powerbox tag).
# IDs and ordinals follow Sandstorm's wire format.
@0xeb014c0c3413cbfb;

using WebSession = import "web-session.capnp".WebSession;
using Ip = import "ip.capnp";

interface ApiSession @0xc879e379c625cdc7 extends(WebSession) {
  struct Params @0xfee82d8d4c4ff597 {
    remoteAddress @0 :Ip.IpAddress;  # only with X-Sandstorm-Passthrough: address
  }

  struct PowerboxTag @0x93e1f7ca567dee32 {
    canonicalUrl @0 :Text;            # base URL, no trailing slash
    oauthScopes @1 :List(OAuthScope); # present (even empty) = OAuth wanted
    authentication @2 :Text;          # "basic", or null

    struct OAuthScope @0xbb95f31093b1fd88 {
      name @0 :Text;
    }
  }
}

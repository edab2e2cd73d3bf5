# Granary: HTTP API sessions, the part package.capnp needs (the powerbox tag a
# bridge app publishes its APIs with). ApiSession extends WebSession and its
# Params carries an ip.capnp address; both are added with web-session.capnp.
# IDs and ordinals follow Sandstorm's wire format.
@0xeb014c0c3413cbfb;

interface ApiSession @0xc879e379c625cdc7 {
  struct PowerboxTag @0x93e1f7ca567dee32 {
    canonicalUrl @0 :Text;           # base URL, no trailing slash
    oauthScopes @1 :List(OAuthScope); # present (even empty) = OAuth wanted
    authentication @2 :Text;         # "basic", or null

    struct OAuthScope @0xbb95f31093b1fd88 {
      name @0 :Text;
    }
  }
}

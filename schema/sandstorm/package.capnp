# Granary: the package format. Apps' sandstorm-pkgdef.capnp files import this
# file as /sandstorm/package.capnp and name its types and fields in text, so
# those names, the IDs and the ordinals are Sandstorm's; the prose is ours.
# docs/packages.md describes how granary spk uses each type.
@0xdf9bc20172856a3a;

using Util = import "util.capnp";
using Grain = import "grain.capnp";
using Powerbox = import "powerbox.capnp";
using ApiSession = import "api-session.capnp";

const magicNumber :Data = "\x8f\xc6\xcd\xef\x45\x1a\xea\x96";
# The first 8 bytes of every .spk file; an xz stream follows.

struct PackageDefinition @0x9f149fa71489be0b {
  # Read by `granary spk pack` from sandstorm-pkgdef.capnp; never shipped.
  id @0 :Text;                    # the app id (the signing key's public half)
  manifest @1 :Manifest;
  sourceMap @2 :SourceMap;
  fileList @3 :Text;              # list of files to include, one per line
  alwaysInclude @4 :List(Text);   # package paths included in full
  bridgeConfig @5 :BridgeConfig;
}

struct Manifest @0x855f296a69e6e1ca {
  # Stored at the archive root as sandstorm-manifest.
  const sizeLimitInWords :UInt64 = 1048576;

  minApiVersion @0 :UInt32;
  maxApiVersion @1 :UInt32;
  actions @2 :List(Action);
  continueCommand @3 :Command;
  appVersion @4 :UInt32;             # orders versions of one app id
  minUpgradableAppVersion @5 :UInt32;
  appMarketingVersion @6 :Util.LocalizedText;
  appTitle @7 :Util.LocalizedText;
  metadata @8 :Metadata;

  struct Command @0xc64951b2a02886cf {
    # Run directly, without a shell; environ is the complete environment.
    deprecatedExecutablePath @0 :Text;
    argv @1 :List(Text);
    environ @2 :List(Util.KeyValue);
  }

  struct Action @0xe5c59b9296375a00 {
    # One way of creating a grain.
    input :union {
      none @0 :Void;
      capability @1 :List(Powerbox.PowerboxDescriptor);
    }
    command @2 :Command;
    title @3 :Util.LocalizedText;
    description @4 :Util.LocalizedText;
    nounPhrase @5 :Util.LocalizedText;
  }
}

struct SourceMap @0xe3d7ba482b2e470b {
  # How package paths map to the developer's files, tried in order.
  searchPath @0 :List(Mapping);

  struct Mapping @0x87dcf1b1edcb3eaf {
    packagePath @0 :Text;        # "" is the package root
    sourcePath @1 :Text;         # relative to the pkgdef's directory, or absolute
    hidePaths @2 :List(Text);    # paths under sourcePath left out
  }
}

struct BridgeConfig @0xdd8c82383168c096 {
  # Stored at the archive root as sandstorm-http-bridge-config.
  viewInfo @0 :Grain.UiView.ViewInfo;
  apiPath @1 :Text;
  saveIdentityCaps @2 :Bool;
  powerboxApis @3 :List(PowerboxApi);
  expectAppHooks @4 :Bool;

  struct PowerboxApi @0xc9702c7dbfc6d7e4 {
    name @0 :Text;
    displayInfo @1 :Powerbox.PowerboxDisplayInfo;
    path @2 :Text;
    tag @3 :ApiSession.ApiSession.PowerboxTag;
    permissions @4 :List(Bool);
  }
}

struct Metadata @0xe0c5892a5448f4ee {
  # What an app market or the install page shows.
  icons :group {
    appGrid @0 :Icon;
    grain @1 :Icon;
    market @2 :Icon;
    marketBig @18 :Icon;
  }

  website @3 :Text;
  codeUrl @4 :Text;

  license :group {
    union {
      none @5 :Void;
      openSource @6 :OpenSourceLicense;
      proprietary @7 :Util.LocalizedText;
      publicDomain @8 :Util.LocalizedText;
    }
    notices @9 :Util.LocalizedText;
  }

  categories @10 :List(Category);

  author :group {
    contactEmail @11 :Text;
    pgpSignature @12 :Data;
    upstreamAuthor @19 :Text;
  }

  pgpKeyring @13 :Data;
  description @14 :Util.LocalizedText;
  shortDescription @15 :Util.LocalizedText;
  screenshots @16 :List(Screenshot);
  changeLog @17 :Util.LocalizedText;

  struct Icon @0xe492a2981208ad0b {
    union {
      unknown @0 :Void;
      svg @1 :Text;
      png :group {
        dpi1x @2 :Data;
        dpi2x @3 :Data;
      }
    }
  }

  struct Screenshot @0x8bc9f4365959348e {
    width @0 :UInt32;
    height @1 :UInt32;
    union {
      unknown @2 :Void;
      png @3 :Data;
      jpeg @4 :Data;
    }
  }
}

struct OsiLicenseInfo @0xb755d258845a4a8f {
  id @0 :Text;
  title @1 :Text;
  requireSource @2 :Bool;
}

annotation osiInfo @0x9476412d0315d869 (enumerant) :OsiLicenseInfo;

enum OpenSourceLicense @0xd86e43f42c8b0f74 {
  invalid @0;
  mit @1 $osiInfo(id = "MIT", title = "MIT License");
  apache2 @2 $osiInfo(id = "Apache-2.0", title = "Apache License v2");
  gpl3 @3 $osiInfo(id = "GPL-3.0", title = "GNU GPL v3", requireSource = true);
  agpl3 @4 $osiInfo(id = "AGPL-3.0", title = "GNU AGPL v3", requireSource = true);
  bsd3Clause @5 $osiInfo(id = "BSD-3-Clause", title = "BSD 3-Clause");
  bsd2Clause @6 $osiInfo(id = "BSD-2-Clause", title = "BSD 2-Clause");
  gpl2 @7 $osiInfo(id = "GPL-2.0", title = "GNU GPL v2", requireSource = true);
  lgpl2 @8 $osiInfo(id = "LGPL-2.1", title = "GNU LGPL v2.1", requireSource = true);
  lgpl3 @9 $osiInfo(id = "LGPL-3.0", title = "GNU LGPL v3", requireSource = true);
  isc @10 $osiInfo(id = "ISC", title = "ISC License");
  artistic2 @11 $osiInfo(id = "Artistic-2.0", title = "Artistic License v2");
  python2 @12 $osiInfo(id = "Python-2.0", title = "Python License v2");
  php3 @13 $osiInfo(id = "PHP-3.0", title = "PHP License v3");
  mpl2 @14 $osiInfo(id = "MPL-2.0", title = "Mozilla Public License v2", requireSource = true);
  cddl @15 $osiInfo(id = "CDDL-1.0", title = "CDDL", requireSource = true);
  epl @16 $osiInfo(id = "EPL-1.0", title = "Eclipse Public License", requireSource = true);
  cpal @17 $osiInfo(id = "CPAL-1.0", title = "Common Public Attribution License",
                    requireSource = true);
  zlib @18 $osiInfo(id = "Zlib", title = "Zlib/libpng License");
}

struct AppId @0x880c6c7782a33310 {
  # The 32 public-key bytes in order, as four little-endian words.
  id0 @0 :UInt64;
  id1 @1 :UInt64;
  id2 @2 :UInt64;
  id3 @3 :UInt64;
}

struct PackageId @0xe2e344d346ffda6b {
  id0 @0 :UInt64;
  id1 @1 :UInt64;
}

struct VerifiedInfo @0x987ef3040a0342a9 {
  appId @0 :AppId;
  packageId @1 :PackageId;
  title @2 :Util.LocalizedText;
  version @3 :UInt32;
  marketingVersion @4 :Util.LocalizedText;
  authorPgpKeyFingerprint @5 :Text;
  metadata @6 :Metadata;
}

struct CategoryInfo @0xb9d2951d34ca391c {
  title @0 :Text;
}

annotation categoryInfo @0x8d51dd236606d205 (enumerant) :CategoryInfo;

enum Category @0x938e7e53b106e1c0 {
  other @0 $categoryInfo(title = "Other");
  productivity @1 $categoryInfo(title = "Productivity");
  communications @2 $categoryInfo(title = "Communications");
  social @3 $categoryInfo(title = "Social");
  webPublishing @4 $categoryInfo(title = "Web Publishing");
  office @5 $categoryInfo(title = "Office");
  developerTools @6 $categoryInfo(title = "DevTools");
  science @7 $categoryInfo(title = "Science");
  media @8 $categoryInfo(title = "Media");
  games @9 $categoryInfo(title = "Games");
  graphics @10 $categoryInfo(title = "Graphics");
}

struct KeyFile @0xe47ce2b3aab90f74 {
  # One keyring entry: a libsodium Ed25519 key pair.
  publicKey @0 :Data;    # 32 bytes
  privateKey @1 :Data;   # 64 bytes
}

struct Signature @0xeca8b9277cb36488 {
  # First message of a package: signs the SHA-512 of the Archive message.
  publicKey @0 :Data;    # 32 bytes
  signature @1 :Data;    # 128 bytes: signature, then the signed hash
}

struct Archive @0xf153ba7dee1c9118 {
  files @0 :List(File);

  struct File @0xd92313d72a1ab4d0 {
    name @0 :Text;
    lastModificationTimeNs @5 :Int64;
    union {
      regular @1 :Data;
      executable @2 :Data;
      symlink @3 :Text;
      directory @4 :List(File);
    }
  }
}

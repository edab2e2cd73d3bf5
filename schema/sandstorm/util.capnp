# Granary: small shared types of the app API (text with translations, handles,
# byte streams, blobs, observable values, static assets). IDs and ordinals are
# Sandstorm's so that apps built for it talk to Granary unchanged.
@0xecd50d792c3d9992;

struct KeyValue @0x94a081e4abb13424 {
  key @0 :Text;
  value @1 :Text;
}

struct LocalizedText @0x8b5db772377be249 {
  # A string shown to people, with optional per-locale alternatives.
  defaultText @0 :Text;
  localizations @1 :List(Localization);

  struct Localization @0xa4f5ae06dd1b7791 {
    locale @0 :Text;   # BCP 47 tag
    text @1 :Text;
  }
}

interface Handle @0x98f424ac606042e0 {
  # Dropping the last reference releases what the handle stands for.
  ping @0 ();
}

interface ByteStream @0xcd57387729cfe35f {
  # Push stream: write chunks, then done(); dropping it early means failure.
  write @0 (data :Data) -> stream;
  done @1 ();
  expectSize @2 (size :UInt64);
}

interface Blob @0xe53527a75d90198f {
  getSize @0 () -> (size :UInt64);
  writeTo @1 (stream :ByteStream, startAtOffset :UInt64 = 0) -> (handle :Handle);
  getSlice @2 (offset :UInt64, size :UInt32) -> (data :Data);
}

interface Assignable @0xeaf255b498229199 (T) {
  # A value that can be read, watched and replaced.
  get @0 () -> (value :T, setter :Setter);
  asGetter @1 () -> (getter :Getter);
  asSetter @2 () -> (setter :Setter);

  interface Getter @0x80f2f65360d64224 {
    get @0 () -> (value :T);
    subscribe @1 (setter :Setter) -> (handle :Handle);
  }

  interface Setter @0xd5256a3f93589d2f {
    set @0 (value :T);
  }
}

interface StaticAsset @0xfabb5e621fa9a23f {
  # Something served over plain HTTP(S) by the platform, e.g. an icon.
  getUrl @0 () -> (protocol :Protocol, hostPath :Text);

  enum Protocol @0x9714437546d80c39 {
    https @0;
    http @1;
  }
}

# Test schema for the cp_ encoding layer and capnpc-c: every primitive width,
# bools and bool lists, composite lists, nested structs, unions, groups,
# defaults of every kind, text, data, lists of lists, enums and AnyPointer.
@0xd5f1c0b3a2e48e11;

enum Color {
  red @0;
  green @1;
  blue @2;
}

struct Inner {
  id @0 :UInt32;
  name @1 :Text;
  flag @2 :Bool;
}

struct Everything {
  voidField @0 :Void;
  boolField @1 :Bool;
  int8Field @2 :Int8;
  int16Field @3 :Int16;
  int32Field @4 :Int32;
  int64Field @5 :Int64;
  uint8Field @6 :UInt8;
  uint16Field @7 :UInt16;
  uint32Field @8 :UInt32;
  uint64Field @9 :UInt64;
  float32Field @10 :Float32;
  float64Field @11 :Float64;
  textField @12 :Text;
  dataField @13 :Data;
  structField @14 :Inner;
  enumField @15 :Color;
  anyField @16 :AnyPointer;

  boolList @17 :List(Bool);
  int8List @18 :List(Int8);
  int16List @19 :List(Int16);
  int32List @20 :List(Int32);
  int64List @21 :List(Int64);
  uint8List @22 :List(UInt8);
  uint16List @23 :List(UInt16);
  uint32List @24 :List(UInt32);
  uint64List @25 :List(UInt64);
  float32List @26 :List(Float32);
  float64List @27 :List(Float64);
  textList @28 :List(Text);
  dataList @29 :List(Data);
  structList @30 :List(Inner);
  enumList @31 :List(Color);
  voidList @32 :List(Void);
  listOfLists @33 :List(List(Int32));
  listOfStructLists @34 :List(List(Inner));

  union {
    unionNone @35 :Void;
    unionInt @36 :Int32;
    unionText @37 :Text;
    unionStruct @38 :Inner;
    unionGroup :group {
      a @39 :UInt16;
      b @40 :Text;
    }
  }

  group :group {
    x @41 :Int64;
    y @42 :Float32;
    inner :union {
      left @43 :UInt8;
      right @44 :Bool;
    }
  }
}

struct Defaults {
  boolDefault @0 :Bool = true;
  int8Default @1 :Int8 = -123;
  int16Default @2 :Int16 = -12345;
  int32Default @3 :Int32 = -12345678;
  int64Default @4 :Int64 = -123456789012345;
  uint8Default @5 :UInt8 = 234;
  uint16Default @6 :UInt16 = 45678;
  uint32Default @7 :UInt32 = 3456789012;
  uint64Default @8 :UInt64 = 12345678901234567890;
  float32Default @9 :Float32 = 1234.5;
  float64Default @10 :Float64 = -123e45;
  textDefault @11 :Text = "foo\"bar\n";
  dataDefault @12 :Data = 0x"de ad be ef 00 01";
  structDefault @13 :Inner = (id = 7, name = "seven", flag = true);
  enumDefault @14 :Color = blue;
  int32ListDefault @15 :List(Int32) = [1, -2, 3];
  textListDefault @16 :List(Text) = ["a", "bc"];
  structListDefault @17 :List(Inner) = [(id = 1), (id = 2, name = "two")];
  boolListDefault @18 :List(Bool) = [true, false, true, true];
}

struct Outer {
  struct Nested {
    enum Mood {
      happy @0;
      sad @1;
    }
    mood @0 :Mood = sad;
    deeper @1 :Deeper;
    struct Deeper {
      value @0 :Text = "deep";
    }
  }
  nested @0 :Nested;
  self @1 :Outer;
}

const constInt :Int32 = -42;
const constFloat :Float64 = 2.5;
const constText :Text = "constant text";
const constData :Data = 0x"0102";
const constStruct :Inner = (id = 99, name = "const");
const constList :List(UInt16) = [10, 20, 30];
const constEnum :Color = green;

# Values attached to enumerants, read back at run time (as Sandstorm's HTTP
# bridge reads httpStatus on its status-code enums).
struct StatusInfo {
  code @0 :UInt16;
  title @1 :Text;
}
annotation status @0xf0e1d2c3b4a59687 (enumerant) :StatusInfo;
annotation weight @0xe0d1c2b3a4958677 (enumerant) :Int32;
annotation label @0xd0c1b2a394857667 (enumerant) :Text;
annotation flagged @0xc0b1a29384756657 (enumerant) :Void;

enum Outcome {
  ok @0 $status(code = 200, title = "OK") $weight(-5) $label("fine");
  missing @1 $status(code = 404, title = "Not Found") $flagged;
  other @2;
}

const constTextList :List(Text) = ["x-sandstorm-app-*", "x-oc-*"];
const constStructList :List(Inner) = [(id = 1, name = "a"), (id = 2, name = "b")];

# Granary: HTTP over Cap'n Proto. The platform turns each browser request to
# a grain into a WebSession call; the HTTP bridge inside the grain turns it
# back into HTTP for the app. IDs, ordinals and names follow Sandstorm's wire
# format; the comments are ours.
@0xa8cb0f2f1a756b32;

using Util = import "util.capnp";
using Grain = import "grain.capnp";

struct HttpStatusDescriptor @0xbc353583a3731ade {
  id @0 :UInt16;     # the HTTP status code
  title @1 :Text;    # its reason phrase
}

annotation httpStatus @0xaf480a0c6cab8887 (enumerant) :HttpStatusDescriptor;
const httpStatusAnnotationId :UInt64 = 0xaf480a0c6cab8887;
# The bridge reads the annotation by this id when it builds its status table.

interface WebSession @0xa50711a14d35a8ce extends(Grain.UiSession) {
  # Paths never start with "/" and carry the query string.
  get @0 (path :Text, context :Context, ignoreBody :Bool) -> Response;
  post @1 (path :Text, content :PostContent, context :Context) -> Response;
  openWebSocket @2 (path :Text, context :Context, protocol :List(Text),
                    clientStream :WebSocketStream)
                -> (protocol :List(Text), serverStream :WebSocketStream);
  put @3 (path :Text, content :PutContent, context :Context) -> Response;
  delete @4 (path :Text, context :Context) -> Response;
  postStreaming @5 (path :Text, mimeType :Text, context :Context, encoding :Text)
                -> (stream :RequestStream);
  putStreaming @6 (path :Text, mimeType :Text, context :Context, encoding :Text)
               -> (stream :RequestStream);

  # WebDAV.
  propfind @7 (path :Text, xmlContent :Text, depth :PropfindDepth, context :Context) -> Response;
  proppatch @8 (path :Text, xmlContent :Text, context :Context) -> Response;
  mkcol @9 (path :Text, content :PostContent, context :Context) -> Response;
  copy @10 (path :Text, destination :Text, noOverwrite :Bool, shallow :Bool,
            context :Context) -> Response;
  move @11 (path :Text, destination :Text, noOverwrite :Bool, context :Context) -> Response;
  lock @12 (path :Text, xmlContent :Text, shallow :Bool, context :Context) -> Response;
  unlock @13 (path :Text, lockToken :Text, context :Context) -> Response;
  acl @14 (path :Text, xmlContent :Text, context :Context) -> Response;
  report @15 (path :Text, content :PostContent, context :Context) -> Response;
  options @16 (path :Text, context :Context) -> Options;
  patch @17 (path :Text, content :PostContent, context :Context) -> Response;

  struct Params @0xd7051b9757f6b096 {
    # The sessionParams of a browser session.
    basePath @0 :Text;
    userAgent @1 :Text;
    acceptableLanguages @2 :List(Text);
  }

  struct Context @0xf5cae52becabc767 {
    # What every request carries besides its path and body.
    cookies @0 :List(Util.KeyValue);
    responseStream @1 :Util.ByteStream;
    accept @2 :List(AcceptedType);
    acceptEncoding @9 :List(AcceptedEncoding);
    additionalHeaders @3 :List(Header);

    eTagPrecondition :union {
      none @4 :Void;
      exists @5 :Void;                    # If-Match: *
      matchesOneOf @6 :List(ETag);        # If-Match
      matchesNoneOf @7 :List(ETag);       # If-None-Match
      doesntExist @8 :Void;               # If-None-Match: *
    }

    struct Header @0xb4e5f4cccb748429 {
      name @0 :Text;     # lower case
      value @1 :Text;
    }

    const headerWhitelist :List(Text) = [
      "x-sandstorm-app-*", "oc-total-length", "oc-chunk-size", "x-oc-mtime", "oc-fileid",
      "oc-chunked", "oc-checksum", "oc-chunk-offset", "oc-lazyops", "x-hgarg-*",
      "x-phabricator-*", "x-requested-with", "x-csrftoken", "x-csrf-token"];
    # Request headers passed through to apps; a trailing "*" matches a prefix.
  }

  struct PostContent @0xb7d82eac416ab63e {
    mimeType @0 :Text;
    content @1 :Data;
    encoding @2 :Text;   # Content-Encoding
  }

  struct PutContent @0xd7aff1fe39659132 {
    mimeType @0 :Text;
    content @1 :Data;
    encoding @2 :Text;
  }

  struct ETag @0xd22c0be5b9c16558 {
    value @0 :Text;   # without the quotes
    weak @1 :Bool;    # W/ prefix
  }

  struct Cookie @0xa87d65bed9b60243 {
    name @0 :Text;
    value @1 :Text;
    expires :union {
      none @2 :Void;
      absolute @3 :Int64;    # Unix seconds
      relative @4 :UInt64;   # seconds from receipt
    }
    httpOnly @5 :Bool;
    path @6 :Text;
  }

  struct AcceptedType @0xaaf9021b627cc1f9 {
    mimeType @0 :Text;
    qValue @1 :Float32 = 1;
  }

  struct AcceptedEncoding @0xbda585bffe1dc7e8 {
    contentCoding @0 :Text;
    qValue @1 :Float32 = 1;
  }

  struct Response @0x8193ac6cb5429c83 {
    setCookies @0 :List(Cookie);
    cachePolicy @16 :CachePolicy;
    additionalHeaders @20 :List(Header);

    union {
      content :group {
        statusCode @10 :SuccessCode;
        encoding @2 :Text;
        language @3 :Text;
        mimeType @4 :Text;
        eTag @17 :ETag;
        body :union {
          bytes @5 :Data;
          stream @6 :Util.Handle;   # the app writes to Context.responseStream
        }
        disposition :union {
          normal @13 :Void;
          download @14 :Text;       # file name for an attachment
        }
      }

      noContent :group {
        shouldResetForm @15 :Bool;  # 205 rather than 204
        eTag @19 :ETag;
      }

      preconditionFailed :group {
        matchingETag @18 :ETag;
      }

      redirect :group {
        isPermanent @1 :Bool;
        switchToGet @12 :Bool;
        location @11 :Text;
      }

      clientError :group {
        statusCode @7 :ClientErrorCode;
        descriptionHtml @8 :Text;
        nonHtmlBody @21 :ErrorBody;
      }

      serverError :group {
        descriptionHtml @9 :Text;
        nonHtmlBody @22 :ErrorBody;
      }
    }

    enum SuccessCode @0x82130007ccd2888f {
      ok @0 $httpStatus(id = 200, title = "OK");
      created @1 $httpStatus(id = 201, title = "Created");
      accepted @2 $httpStatus(id = 202, title = "Accepted");
      noContent @3 $httpStatus(id = 204, title = "No Content");
      partialContent @4 $httpStatus(id = 206, title = "Partial Content");
      multiStatus @5 $httpStatus(id = 207, title = "Multi-Status");
      notModified @6 $httpStatus(id = 304, title = "Not Modified");
    }

    enum ClientErrorCode @0x8ea31bdb4c044f01 {
      badRequest @0 $httpStatus(id = 400, title = "Bad Request");
      forbidden @1 $httpStatus(id = 403, title = "Forbidden");
      notFound @2 $httpStatus(id = 404, title = "Not Found");
      methodNotAllowed @3 $httpStatus(id = 405, title = "Method Not Allowed");
      notAcceptable @4 $httpStatus(id = 406, title = "Not Acceptable");
      conflict @5 $httpStatus(id = 409, title = "Conflict");
      gone @6 $httpStatus(id = 410, title = "Gone");
      requestEntityTooLarge @7 $httpStatus(id = 413, title = "Request Entity Too Large");
      requestUriTooLong @8 $httpStatus(id = 414, title = "Request-URI Too Long");
      unsupportedMediaType @9 $httpStatus(id = 415, title = "Unsupported Media Type");
      imATeapot @10 $httpStatus(id = 418, title = "I'm a teapot");
      preconditionFailed @11 $httpStatus(id = 412, title = "Precondition Failed");
      unprocessableEntity @12 $httpStatus(id = 422, title = "Unprocessable Entity");
    }

    struct Header @0xb4b873147ab5ce5e {
      name @0 :Text;
      value @1 :Text;
    }

    struct ErrorBody @0x9497e63b399a2c01 {
      data @0 :Data;
      encoding @1 :Text;
      language @2 :Text;
      mimeType @3 :Text;
    }

    const headerWhitelist :List(Text) = ["x-sandstorm-app-*", "x-oc-mtime"];
    # Response headers apps may set.
  }

  interface RequestStream @0x99ffc2f3f69a6a9f extends(Util.ByteStream) {
    # A request body sent in pieces; ask for the response before writing.
    getResponse @0 () -> Response;
  }

  interface WebSocketStream @0xf001fc1d5e574a07 {
    sendBytes @0 (message :Data) -> stream;   # raw WebSocket frames
  }

  struct CachePolicy @0xb37b21e300864885 {
    withCheck @0 :Scope;
    permanent @1 :Scope;
    variesOnCookie @2 :Bool;
    variesOnAccept @3 :Bool;

    enum Scope @0x81535505f60de028 {
      none @0;
      perSession @1;
      perUser @2;
      perAppVersion @3;
      universal @4;
    }
  }

  struct Options @0xe9ff06beec4e73d6 {
    davClass1 @0 :Bool;
    davClass2 @1 :Bool;
    davClass3 @2 :Bool;
    davExtensions @3 :List(Text);
  }

  enum PropfindDepth @0xb39cc44599b3a41b {
    infinity @0;
    zero @1;
    one @2;
  }
}

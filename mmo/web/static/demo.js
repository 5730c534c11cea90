var __defProp = Object.defineProperty;
var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

// node_modules/@msgpack/msgpack/dist.esm/utils/utf8.mjs
function utf8Count(str) {
  const strLength = str.length;
  let byteLength = 0;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      byteLength++;
      continue;
    } else if ((value & 4294965248) === 0) {
      byteLength += 2;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        byteLength += 3;
      } else {
        byteLength += 4;
      }
    }
  }
  return byteLength;
}
function utf8EncodeJs(str, output, outputOffset) {
  const strLength = str.length;
  let offset = outputOffset;
  let pos = 0;
  while (pos < strLength) {
    let value = str.charCodeAt(pos++);
    if ((value & 4294967168) === 0) {
      output[offset++] = value;
      continue;
    } else if ((value & 4294965248) === 0) {
      output[offset++] = value >> 6 & 31 | 192;
    } else {
      if (value >= 55296 && value <= 56319) {
        if (pos < strLength) {
          const extra = str.charCodeAt(pos);
          if ((extra & 64512) === 56320) {
            ++pos;
            value = ((value & 1023) << 10) + (extra & 1023) + 65536;
          }
        }
      }
      if ((value & 4294901760) === 0) {
        output[offset++] = value >> 12 & 15 | 224;
        output[offset++] = value >> 6 & 63 | 128;
      } else {
        output[offset++] = value >> 18 & 7 | 240;
        output[offset++] = value >> 12 & 63 | 128;
        output[offset++] = value >> 6 & 63 | 128;
      }
    }
    output[offset++] = value & 63 | 128;
  }
}
var sharedTextEncoder = new TextEncoder();
var TEXT_ENCODER_THRESHOLD = 50;
function utf8EncodeTE(str, output, outputOffset) {
  sharedTextEncoder.encodeInto(str, output.subarray(outputOffset));
}
function utf8Encode(str, output, outputOffset) {
  if (str.length > TEXT_ENCODER_THRESHOLD) {
    utf8EncodeTE(str, output, outputOffset);
  } else {
    utf8EncodeJs(str, output, outputOffset);
  }
}
var CHUNK_SIZE = 4096;
function utf8DecodeJs(bytes, inputOffset, byteLength) {
  let offset = inputOffset;
  const end = offset + byteLength;
  const units = [];
  let result = "";
  while (offset < end) {
    const byte1 = bytes[offset++];
    if ((byte1 & 128) === 0) {
      units.push(byte1);
    } else if ((byte1 & 224) === 192) {
      const byte2 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 6 | byte2);
    } else if ((byte1 & 240) === 224) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      units.push((byte1 & 31) << 12 | byte2 << 6 | byte3);
    } else if ((byte1 & 248) === 240) {
      const byte2 = bytes[offset++] & 63;
      const byte3 = bytes[offset++] & 63;
      const byte4 = bytes[offset++] & 63;
      let unit = (byte1 & 7) << 18 | byte2 << 12 | byte3 << 6 | byte4;
      if (unit > 65535) {
        unit -= 65536;
        units.push(unit >>> 10 & 1023 | 55296);
        unit = 56320 | unit & 1023;
      }
      units.push(unit);
    } else {
      units.push(byte1);
    }
    if (units.length >= CHUNK_SIZE) {
      result += String.fromCharCode(...units);
      units.length = 0;
    }
  }
  if (units.length > 0) {
    result += String.fromCharCode(...units);
  }
  return result;
}
var sharedTextDecoder = new TextDecoder();
var TEXT_DECODER_THRESHOLD = 200;
function utf8DecodeTD(bytes, inputOffset, byteLength) {
  const stringBytes = bytes.subarray(inputOffset, inputOffset + byteLength);
  return sharedTextDecoder.decode(stringBytes);
}
function utf8Decode(bytes, inputOffset, byteLength) {
  if (byteLength > TEXT_DECODER_THRESHOLD) {
    return utf8DecodeTD(bytes, inputOffset, byteLength);
  } else {
    return utf8DecodeJs(bytes, inputOffset, byteLength);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/ExtData.mjs
var ExtData = class {
  constructor(type, data) {
    __publicField(this, "type");
    __publicField(this, "data");
    this.type = type;
    this.data = data;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/DecodeError.mjs
var DecodeError = class _DecodeError extends Error {
  constructor(message) {
    super(message);
    const proto = Object.create(_DecodeError.prototype);
    Object.setPrototypeOf(this, proto);
    Object.defineProperty(this, "name", {
      configurable: true,
      enumerable: false,
      value: _DecodeError.name
    });
  }
};

// node_modules/@msgpack/msgpack/dist.esm/utils/int.mjs
var UINT32_MAX = 4294967295;
function setUint64(view, offset, value) {
  const high = value / 4294967296;
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function setInt64(view, offset, value) {
  const high = Math.floor(value / 4294967296);
  const low = value;
  view.setUint32(offset, high);
  view.setUint32(offset + 4, low);
}
function getInt64(view, offset) {
  const high = view.getInt32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}
function getUint64(view, offset) {
  const high = view.getUint32(offset);
  const low = view.getUint32(offset + 4);
  return high * 4294967296 + low;
}

// node_modules/@msgpack/msgpack/dist.esm/timestamp.mjs
var EXT_TIMESTAMP = -1;
var TIMESTAMP32_MAX_SEC = 4294967296 - 1;
var TIMESTAMP64_MAX_SEC = 17179869184 - 1;
function encodeTimeSpecToTimestamp({ sec, nsec }) {
  if (sec >= 0 && nsec >= 0 && sec <= TIMESTAMP64_MAX_SEC) {
    if (nsec === 0 && sec <= TIMESTAMP32_MAX_SEC) {
      const rv = new Uint8Array(4);
      const view = new DataView(rv.buffer);
      view.setUint32(0, sec);
      return rv;
    } else {
      const secHigh = sec / 4294967296;
      const secLow = sec & 4294967295;
      const rv = new Uint8Array(8);
      const view = new DataView(rv.buffer);
      view.setUint32(0, nsec << 2 | secHigh & 3);
      view.setUint32(4, secLow);
      return rv;
    }
  } else {
    const rv = new Uint8Array(12);
    const view = new DataView(rv.buffer);
    view.setUint32(0, nsec);
    setInt64(view, 4, sec);
    return rv;
  }
}
function encodeDateToTimeSpec(date) {
  const msec = date.getTime();
  const sec = Math.floor(msec / 1e3);
  const nsec = (msec - sec * 1e3) * 1e6;
  const nsecInSec = Math.floor(nsec / 1e9);
  return {
    sec: sec + nsecInSec,
    nsec: nsec - nsecInSec * 1e9
  };
}
function encodeTimestampExtension(object) {
  if (object instanceof Date) {
    const timeSpec = encodeDateToTimeSpec(object);
    return encodeTimeSpecToTimestamp(timeSpec);
  } else {
    return null;
  }
}
function decodeTimestampToTimeSpec(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (data.byteLength) {
    case 4: {
      const sec = view.getUint32(0);
      const nsec = 0;
      return { sec, nsec };
    }
    case 8: {
      const nsec30AndSecHigh2 = view.getUint32(0);
      const secLow32 = view.getUint32(4);
      const sec = (nsec30AndSecHigh2 & 3) * 4294967296 + secLow32;
      const nsec = nsec30AndSecHigh2 >>> 2;
      return { sec, nsec };
    }
    case 12: {
      const sec = getInt64(view, 4);
      const nsec = view.getUint32(0);
      return { sec, nsec };
    }
    default:
      throw new DecodeError(`Unrecognized data size for timestamp (expected 4, 8, or 12): ${data.length}`);
  }
}
function decodeTimestampExtension(data) {
  const timeSpec = decodeTimestampToTimeSpec(data);
  return new Date(timeSpec.sec * 1e3 + timeSpec.nsec / 1e6);
}
var timestampExtension = {
  type: EXT_TIMESTAMP,
  encode: encodeTimestampExtension,
  decode: decodeTimestampExtension
};

// node_modules/@msgpack/msgpack/dist.esm/ExtensionCodec.mjs
var _ExtensionCodec = class _ExtensionCodec {
  constructor() {
    // ensures ExtensionCodecType<X> matches ExtensionCodec<X>
    // this will make type errors a lot more clear
    // eslint-disable-next-line @typescript-eslint/naming-convention
    __publicField(this, "__brand");
    // built-in extensions
    __publicField(this, "builtInEncoders", []);
    __publicField(this, "builtInDecoders", []);
    // custom extensions
    __publicField(this, "encoders", []);
    __publicField(this, "decoders", []);
    this.register(timestampExtension);
  }
  register({ type, encode: encode2, decode: decode2 }) {
    if (type >= 0) {
      this.encoders[type] = encode2;
      this.decoders[type] = decode2;
    } else {
      const index = -1 - type;
      this.builtInEncoders[index] = encode2;
      this.builtInDecoders[index] = decode2;
    }
  }
  tryToEncode(object, context) {
    for (let i = 0; i < this.builtInEncoders.length; i++) {
      const encodeExt = this.builtInEncoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = -1 - i;
          return new ExtData(type, data);
        }
      }
    }
    for (let i = 0; i < this.encoders.length; i++) {
      const encodeExt = this.encoders[i];
      if (encodeExt != null) {
        const data = encodeExt(object, context);
        if (data != null) {
          const type = i;
          return new ExtData(type, data);
        }
      }
    }
    if (object instanceof ExtData) {
      return object;
    }
    return null;
  }
  decode(data, type, context) {
    const decodeExt = type < 0 ? this.builtInDecoders[-1 - type] : this.decoders[type];
    if (decodeExt) {
      return decodeExt(data, type, context);
    } else {
      return new ExtData(type, data);
    }
  }
};
__publicField(_ExtensionCodec, "defaultCodec", new _ExtensionCodec());
var ExtensionCodec = _ExtensionCodec;

// node_modules/@msgpack/msgpack/dist.esm/utils/typedArrays.mjs
function isArrayBufferLike(buffer) {
  return buffer instanceof ArrayBuffer || typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
}
function ensureUint8Array(buffer) {
  if (buffer instanceof Uint8Array) {
    return buffer;
  } else if (ArrayBuffer.isView(buffer)) {
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } else if (isArrayBufferLike(buffer)) {
    return new Uint8Array(buffer);
  } else {
    return Uint8Array.from(buffer);
  }
}

// node_modules/@msgpack/msgpack/dist.esm/Encoder.mjs
var DEFAULT_MAX_DEPTH = 100;
var DEFAULT_INITIAL_BUFFER_SIZE = 2048;
var Encoder = class _Encoder {
  constructor(options) {
    __publicField(this, "extensionCodec");
    __publicField(this, "context");
    __publicField(this, "useBigInt64");
    __publicField(this, "maxDepth");
    __publicField(this, "initialBufferSize");
    __publicField(this, "sortKeys");
    __publicField(this, "forceFloat32");
    __publicField(this, "ignoreUndefined");
    __publicField(this, "forceIntegerToFloat");
    __publicField(this, "pos");
    __publicField(this, "view");
    __publicField(this, "bytes");
    __publicField(this, "entered", false);
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.maxDepth = options?.maxDepth ?? DEFAULT_MAX_DEPTH;
    this.initialBufferSize = options?.initialBufferSize ?? DEFAULT_INITIAL_BUFFER_SIZE;
    this.sortKeys = options?.sortKeys ?? false;
    this.forceFloat32 = options?.forceFloat32 ?? false;
    this.ignoreUndefined = options?.ignoreUndefined ?? false;
    this.forceIntegerToFloat = options?.forceIntegerToFloat ?? false;
    this.pos = 0;
    this.view = new DataView(new ArrayBuffer(this.initialBufferSize));
    this.bytes = new Uint8Array(this.view.buffer);
  }
  clone() {
    return new _Encoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      maxDepth: this.maxDepth,
      initialBufferSize: this.initialBufferSize,
      sortKeys: this.sortKeys,
      forceFloat32: this.forceFloat32,
      ignoreUndefined: this.ignoreUndefined,
      forceIntegerToFloat: this.forceIntegerToFloat
    });
  }
  reinitializeState() {
    this.pos = 0;
  }
  /**
   * This is almost equivalent to {@link Encoder#encode}, but it returns an reference of the encoder's internal buffer and thus much faster than {@link Encoder#encode}.
   *
   * @returns Encodes the object and returns a shared reference the encoder's internal buffer.
   */
  encodeSharedRef(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encodeSharedRef(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.subarray(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  /**
   * @returns Encodes the object and returns a copy of the encoder's internal buffer.
   */
  encode(object) {
    if (this.entered) {
      const instance = this.clone();
      return instance.encode(object);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.doEncode(object, 1);
      return this.bytes.slice(0, this.pos);
    } finally {
      this.entered = false;
    }
  }
  doEncode(object, depth) {
    if (depth > this.maxDepth) {
      throw new Error(`Too deep objects in depth ${depth}`);
    }
    if (object == null) {
      this.encodeNil();
    } else if (typeof object === "boolean") {
      this.encodeBoolean(object);
    } else if (typeof object === "number") {
      if (!this.forceIntegerToFloat) {
        this.encodeNumber(object);
      } else {
        this.encodeNumberAsFloat(object);
      }
    } else if (typeof object === "string") {
      this.encodeString(object);
    } else if (this.useBigInt64 && typeof object === "bigint") {
      this.encodeBigInt64(object);
    } else {
      this.encodeObject(object, depth);
    }
  }
  ensureBufferSizeToWrite(sizeToWrite) {
    const requiredSize = this.pos + sizeToWrite;
    if (this.view.byteLength < requiredSize) {
      this.resizeBuffer(requiredSize * 2);
    }
  }
  resizeBuffer(newSize) {
    const newBuffer = new ArrayBuffer(newSize);
    const newBytes = new Uint8Array(newBuffer);
    const newView = new DataView(newBuffer);
    newBytes.set(this.bytes);
    this.view = newView;
    this.bytes = newBytes;
  }
  encodeNil() {
    this.writeU8(192);
  }
  encodeBoolean(object) {
    if (object === false) {
      this.writeU8(194);
    } else {
      this.writeU8(195);
    }
  }
  encodeNumber(object) {
    if (!this.forceIntegerToFloat && Number.isSafeInteger(object)) {
      if (object >= 0) {
        if (object < 128) {
          this.writeU8(object);
        } else if (object < 256) {
          this.writeU8(204);
          this.writeU8(object);
        } else if (object < 65536) {
          this.writeU8(205);
          this.writeU16(object);
        } else if (object < 4294967296) {
          this.writeU8(206);
          this.writeU32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(207);
          this.writeU64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      } else {
        if (object >= -32) {
          this.writeU8(224 | object + 32);
        } else if (object >= -128) {
          this.writeU8(208);
          this.writeI8(object);
        } else if (object >= -32768) {
          this.writeU8(209);
          this.writeI16(object);
        } else if (object >= -2147483648) {
          this.writeU8(210);
          this.writeI32(object);
        } else if (!this.useBigInt64) {
          this.writeU8(211);
          this.writeI64(object);
        } else {
          this.encodeNumberAsFloat(object);
        }
      }
    } else {
      this.encodeNumberAsFloat(object);
    }
  }
  encodeNumberAsFloat(object) {
    if (this.forceFloat32) {
      this.writeU8(202);
      this.writeF32(object);
    } else {
      this.writeU8(203);
      this.writeF64(object);
    }
  }
  encodeBigInt64(object) {
    if (object >= BigInt(0)) {
      this.writeU8(207);
      this.writeBigUint64(object);
    } else {
      this.writeU8(211);
      this.writeBigInt64(object);
    }
  }
  writeStringHeader(byteLength) {
    if (byteLength < 32) {
      this.writeU8(160 + byteLength);
    } else if (byteLength < 256) {
      this.writeU8(217);
      this.writeU8(byteLength);
    } else if (byteLength < 65536) {
      this.writeU8(218);
      this.writeU16(byteLength);
    } else if (byteLength < 4294967296) {
      this.writeU8(219);
      this.writeU32(byteLength);
    } else {
      throw new Error(`Too long string: ${byteLength} bytes in UTF-8`);
    }
  }
  encodeString(object) {
    const maxHeaderSize = 1 + 4;
    const byteLength = utf8Count(object);
    this.ensureBufferSizeToWrite(maxHeaderSize + byteLength);
    this.writeStringHeader(byteLength);
    utf8Encode(object, this.bytes, this.pos);
    this.pos += byteLength;
  }
  encodeObject(object, depth) {
    const ext = this.extensionCodec.tryToEncode(object, this.context);
    if (ext != null) {
      this.encodeExtension(ext);
    } else if (Array.isArray(object)) {
      this.encodeArray(object, depth);
    } else if (ArrayBuffer.isView(object)) {
      this.encodeBinary(object);
    } else if (typeof object === "object") {
      this.encodeMap(object, depth);
    } else {
      throw new Error(`Unrecognized object: ${Object.prototype.toString.apply(object)}`);
    }
  }
  encodeBinary(object) {
    const size = object.byteLength;
    if (size < 256) {
      this.writeU8(196);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(197);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(198);
      this.writeU32(size);
    } else {
      throw new Error(`Too large binary: ${size}`);
    }
    const bytes = ensureUint8Array(object);
    this.writeU8a(bytes);
  }
  encodeArray(object, depth) {
    const size = object.length;
    if (size < 16) {
      this.writeU8(144 + size);
    } else if (size < 65536) {
      this.writeU8(220);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(221);
      this.writeU32(size);
    } else {
      throw new Error(`Too large array: ${size}`);
    }
    for (const item of object) {
      this.doEncode(item, depth + 1);
    }
  }
  countWithoutUndefined(object, keys) {
    let count = 0;
    for (const key of keys) {
      if (object[key] !== void 0) {
        count++;
      }
    }
    return count;
  }
  encodeMap(object, depth) {
    const keys = Object.keys(object);
    if (this.sortKeys) {
      keys.sort();
    }
    const size = this.ignoreUndefined ? this.countWithoutUndefined(object, keys) : keys.length;
    if (size < 16) {
      this.writeU8(128 + size);
    } else if (size < 65536) {
      this.writeU8(222);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(223);
      this.writeU32(size);
    } else {
      throw new Error(`Too large map object: ${size}`);
    }
    for (const key of keys) {
      const value = object[key];
      if (!(this.ignoreUndefined && value === void 0)) {
        this.encodeString(key);
        this.doEncode(value, depth + 1);
      }
    }
  }
  encodeExtension(ext) {
    if (typeof ext.data === "function") {
      const data = ext.data(this.pos + 6);
      const size2 = data.length;
      if (size2 >= 4294967296) {
        throw new Error(`Too large extension object: ${size2}`);
      }
      this.writeU8(201);
      this.writeU32(size2);
      this.writeI8(ext.type);
      this.writeU8a(data);
      return;
    }
    const size = ext.data.length;
    if (size === 1) {
      this.writeU8(212);
    } else if (size === 2) {
      this.writeU8(213);
    } else if (size === 4) {
      this.writeU8(214);
    } else if (size === 8) {
      this.writeU8(215);
    } else if (size === 16) {
      this.writeU8(216);
    } else if (size < 256) {
      this.writeU8(199);
      this.writeU8(size);
    } else if (size < 65536) {
      this.writeU8(200);
      this.writeU16(size);
    } else if (size < 4294967296) {
      this.writeU8(201);
      this.writeU32(size);
    } else {
      throw new Error(`Too large extension object: ${size}`);
    }
    this.writeI8(ext.type);
    this.writeU8a(ext.data);
  }
  writeU8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setUint8(this.pos, value);
    this.pos++;
  }
  writeU8a(values) {
    const size = values.length;
    this.ensureBufferSizeToWrite(size);
    this.bytes.set(values, this.pos);
    this.pos += size;
  }
  writeI8(value) {
    this.ensureBufferSizeToWrite(1);
    this.view.setInt8(this.pos, value);
    this.pos++;
  }
  writeU16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }
  writeI16(value) {
    this.ensureBufferSizeToWrite(2);
    this.view.setInt16(this.pos, value);
    this.pos += 2;
  }
  writeU32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }
  writeI32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setInt32(this.pos, value);
    this.pos += 4;
  }
  writeF32(value) {
    this.ensureBufferSizeToWrite(4);
    this.view.setFloat32(this.pos, value);
    this.pos += 4;
  }
  writeF64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setFloat64(this.pos, value);
    this.pos += 8;
  }
  writeU64(value) {
    this.ensureBufferSizeToWrite(8);
    setUint64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeI64(value) {
    this.ensureBufferSizeToWrite(8);
    setInt64(this.view, this.pos, value);
    this.pos += 8;
  }
  writeBigUint64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigUint64(this.pos, value);
    this.pos += 8;
  }
  writeBigInt64(value) {
    this.ensureBufferSizeToWrite(8);
    this.view.setBigInt64(this.pos, value);
    this.pos += 8;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/encode.mjs
function encode(value, options) {
  const encoder = new Encoder(options);
  return encoder.encodeSharedRef(value);
}

// node_modules/@msgpack/msgpack/dist.esm/utils/prettyByte.mjs
function prettyByte(byte) {
  return `${byte < 0 ? "-" : ""}0x${Math.abs(byte).toString(16).padStart(2, "0")}`;
}

// node_modules/@msgpack/msgpack/dist.esm/CachedKeyDecoder.mjs
var DEFAULT_MAX_KEY_LENGTH = 16;
var DEFAULT_MAX_LENGTH_PER_KEY = 16;
var CachedKeyDecoder = class {
  constructor(maxKeyLength = DEFAULT_MAX_KEY_LENGTH, maxLengthPerKey = DEFAULT_MAX_LENGTH_PER_KEY) {
    __publicField(this, "hit", 0);
    __publicField(this, "miss", 0);
    __publicField(this, "caches");
    __publicField(this, "maxKeyLength");
    __publicField(this, "maxLengthPerKey");
    this.maxKeyLength = maxKeyLength;
    this.maxLengthPerKey = maxLengthPerKey;
    this.caches = [];
    for (let i = 0; i < this.maxKeyLength; i++) {
      this.caches.push([]);
    }
  }
  canBeCached(byteLength) {
    return byteLength > 0 && byteLength <= this.maxKeyLength;
  }
  find(bytes, inputOffset, byteLength) {
    const records = this.caches[byteLength - 1];
    FIND_CHUNK: for (const record of records) {
      const recordBytes = record.bytes;
      for (let j = 0; j < byteLength; j++) {
        if (recordBytes[j] !== bytes[inputOffset + j]) {
          continue FIND_CHUNK;
        }
      }
      return record.str;
    }
    return null;
  }
  store(bytes, value) {
    const records = this.caches[bytes.length - 1];
    const record = { bytes, str: value };
    if (records.length >= this.maxLengthPerKey) {
      records[Math.random() * records.length | 0] = record;
    } else {
      records.push(record);
    }
  }
  decode(bytes, inputOffset, byteLength) {
    const cachedValue = this.find(bytes, inputOffset, byteLength);
    if (cachedValue != null) {
      this.hit++;
      return cachedValue;
    }
    this.miss++;
    const str = utf8DecodeJs(bytes, inputOffset, byteLength);
    const slicedCopyOfBytes = Uint8Array.prototype.slice.call(bytes, inputOffset, inputOffset + byteLength);
    this.store(slicedCopyOfBytes, str);
    return str;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/Decoder.mjs
var STATE_ARRAY = "array";
var STATE_MAP_KEY = "map_key";
var STATE_MAP_VALUE = "map_value";
var mapKeyConverter = (key) => {
  if (typeof key === "string" || typeof key === "number") {
    return key;
  }
  throw new DecodeError("The type of key must be string or number but " + typeof key);
};
var StackPool = class {
  constructor() {
    __publicField(this, "stack", []);
    __publicField(this, "stackHeadPosition", -1);
  }
  get length() {
    return this.stackHeadPosition + 1;
  }
  top() {
    return this.stack[this.stackHeadPosition];
  }
  pushArrayState(size) {
    const state2 = this.getUninitializedStateFromPool();
    state2.type = STATE_ARRAY;
    state2.position = 0;
    state2.size = size;
    state2.array = new Array(size);
  }
  pushMapState(size) {
    const state2 = this.getUninitializedStateFromPool();
    state2.type = STATE_MAP_KEY;
    state2.readCount = 0;
    state2.size = size;
    state2.map = {};
  }
  getUninitializedStateFromPool() {
    this.stackHeadPosition++;
    if (this.stackHeadPosition === this.stack.length) {
      const partialState = {
        type: void 0,
        size: 0,
        array: void 0,
        position: 0,
        readCount: 0,
        map: void 0,
        key: null
      };
      this.stack.push(partialState);
    }
    return this.stack[this.stackHeadPosition];
  }
  release(state2) {
    const topStackState = this.stack[this.stackHeadPosition];
    if (topStackState !== state2) {
      throw new Error("Invalid stack state. Released state is not on top of the stack.");
    }
    if (state2.type === STATE_ARRAY) {
      const partialState = state2;
      partialState.size = 0;
      partialState.array = void 0;
      partialState.position = 0;
      partialState.type = void 0;
    }
    if (state2.type === STATE_MAP_KEY || state2.type === STATE_MAP_VALUE) {
      const partialState = state2;
      partialState.size = 0;
      partialState.map = void 0;
      partialState.readCount = 0;
      partialState.type = void 0;
    }
    this.stackHeadPosition--;
  }
  reset() {
    this.stack.length = 0;
    this.stackHeadPosition = -1;
  }
};
var HEAD_BYTE_REQUIRED = -1;
var EMPTY_VIEW = new DataView(new ArrayBuffer(0));
var EMPTY_BYTES = new Uint8Array(EMPTY_VIEW.buffer);
try {
  EMPTY_VIEW.getInt8(0);
} catch (e) {
  if (!(e instanceof RangeError)) {
    throw new Error("This module is not supported in the current JavaScript engine because DataView does not throw RangeError on out-of-bounds access");
  }
}
var MORE_DATA = new RangeError("Insufficient data");
var sharedCachedKeyDecoder = new CachedKeyDecoder();
var Decoder = class _Decoder {
  constructor(options) {
    __publicField(this, "extensionCodec");
    __publicField(this, "context");
    __publicField(this, "useBigInt64");
    __publicField(this, "rawStrings");
    __publicField(this, "maxStrLength");
    __publicField(this, "maxBinLength");
    __publicField(this, "maxArrayLength");
    __publicField(this, "maxMapLength");
    __publicField(this, "maxExtLength");
    __publicField(this, "keyDecoder");
    __publicField(this, "mapKeyConverter");
    __publicField(this, "totalPos", 0);
    __publicField(this, "pos", 0);
    __publicField(this, "view", EMPTY_VIEW);
    __publicField(this, "bytes", EMPTY_BYTES);
    __publicField(this, "headByte", HEAD_BYTE_REQUIRED);
    __publicField(this, "stack", new StackPool());
    __publicField(this, "entered", false);
    this.extensionCodec = options?.extensionCodec ?? ExtensionCodec.defaultCodec;
    this.context = options?.context;
    this.useBigInt64 = options?.useBigInt64 ?? false;
    this.rawStrings = options?.rawStrings ?? false;
    this.maxStrLength = options?.maxStrLength ?? UINT32_MAX;
    this.maxBinLength = options?.maxBinLength ?? UINT32_MAX;
    this.maxArrayLength = options?.maxArrayLength ?? UINT32_MAX;
    this.maxMapLength = options?.maxMapLength ?? UINT32_MAX;
    this.maxExtLength = options?.maxExtLength ?? UINT32_MAX;
    this.keyDecoder = options?.keyDecoder !== void 0 ? options.keyDecoder : sharedCachedKeyDecoder;
    this.mapKeyConverter = options?.mapKeyConverter ?? mapKeyConverter;
  }
  clone() {
    return new _Decoder({
      extensionCodec: this.extensionCodec,
      context: this.context,
      useBigInt64: this.useBigInt64,
      rawStrings: this.rawStrings,
      maxStrLength: this.maxStrLength,
      maxBinLength: this.maxBinLength,
      maxArrayLength: this.maxArrayLength,
      maxMapLength: this.maxMapLength,
      maxExtLength: this.maxExtLength,
      keyDecoder: this.keyDecoder
    });
  }
  reinitializeState() {
    this.totalPos = 0;
    this.headByte = HEAD_BYTE_REQUIRED;
    this.stack.reset();
  }
  setBuffer(buffer) {
    const bytes = ensureUint8Array(buffer);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  appendBuffer(buffer) {
    if (this.headByte === HEAD_BYTE_REQUIRED && !this.hasRemaining(1)) {
      this.setBuffer(buffer);
    } else {
      const remainingData = this.bytes.subarray(this.pos);
      const newData = ensureUint8Array(buffer);
      const newBuffer = new Uint8Array(remainingData.length + newData.length);
      newBuffer.set(remainingData);
      newBuffer.set(newData, remainingData.length);
      this.setBuffer(newBuffer);
    }
  }
  hasRemaining(size) {
    return this.view.byteLength - this.pos >= size;
  }
  createExtraByteError(posToShow) {
    const { view, pos } = this;
    return new RangeError(`Extra ${view.byteLength - pos} of ${view.byteLength} byte(s) found at buffer[${posToShow}]`);
  }
  /**
   * @throws {@link DecodeError}
   * @throws {@link RangeError}
   */
  decode(buffer) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decode(buffer);
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      const object = this.doDecodeSync();
      if (this.hasRemaining(1)) {
        throw this.createExtraByteError(this.pos);
      }
      return object;
    } finally {
      this.entered = false;
    }
  }
  *decodeMulti(buffer) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMulti(buffer);
      return;
    }
    try {
      this.entered = true;
      this.reinitializeState();
      this.setBuffer(buffer);
      while (this.hasRemaining(1)) {
        yield this.doDecodeSync();
      }
    } finally {
      this.entered = false;
    }
  }
  async decodeAsync(stream) {
    if (this.entered) {
      const instance = this.clone();
      return instance.decodeAsync(stream);
    }
    try {
      this.entered = true;
      let decoded = false;
      let object;
      for await (const buffer of stream) {
        if (decoded) {
          this.entered = false;
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        try {
          object = this.doDecodeSync();
          decoded = true;
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
      if (decoded) {
        if (this.hasRemaining(1)) {
          throw this.createExtraByteError(this.totalPos);
        }
        return object;
      }
      const { headByte, pos, totalPos } = this;
      throw new RangeError(`Insufficient data in parsing ${prettyByte(headByte)} at ${totalPos} (${pos} in the current buffer)`);
    } finally {
      this.entered = false;
    }
  }
  decodeArrayStream(stream) {
    return this.decodeMultiAsync(stream, true);
  }
  decodeStream(stream) {
    return this.decodeMultiAsync(stream, false);
  }
  async *decodeMultiAsync(stream, isArray) {
    if (this.entered) {
      const instance = this.clone();
      yield* instance.decodeMultiAsync(stream, isArray);
      return;
    }
    try {
      this.entered = true;
      let isArrayHeaderRequired = isArray;
      let arrayItemsLeft = -1;
      for await (const buffer of stream) {
        if (isArray && arrayItemsLeft === 0) {
          throw this.createExtraByteError(this.totalPos);
        }
        this.appendBuffer(buffer);
        if (isArrayHeaderRequired) {
          arrayItemsLeft = this.readArraySize();
          isArrayHeaderRequired = false;
          this.complete();
        }
        try {
          while (true) {
            yield this.doDecodeSync();
            if (--arrayItemsLeft === 0) {
              break;
            }
          }
        } catch (e) {
          if (!(e instanceof RangeError)) {
            throw e;
          }
        }
        this.totalPos += this.pos;
      }
    } finally {
      this.entered = false;
    }
  }
  doDecodeSync() {
    DECODE: while (true) {
      const headByte = this.readHeadByte();
      let object;
      if (headByte >= 224) {
        object = headByte - 256;
      } else if (headByte < 192) {
        if (headByte < 128) {
          object = headByte;
        } else if (headByte < 144) {
          const size = headByte - 128;
          if (size !== 0) {
            this.pushMapState(size);
            this.complete();
            continue DECODE;
          } else {
            object = {};
          }
        } else if (headByte < 160) {
          const size = headByte - 144;
          if (size !== 0) {
            this.pushArrayState(size);
            this.complete();
            continue DECODE;
          } else {
            object = [];
          }
        } else {
          const byteLength = headByte - 160;
          object = this.decodeString(byteLength, 0);
        }
      } else if (headByte === 192) {
        object = null;
      } else if (headByte === 194) {
        object = false;
      } else if (headByte === 195) {
        object = true;
      } else if (headByte === 202) {
        object = this.readF32();
      } else if (headByte === 203) {
        object = this.readF64();
      } else if (headByte === 204) {
        object = this.readU8();
      } else if (headByte === 205) {
        object = this.readU16();
      } else if (headByte === 206) {
        object = this.readU32();
      } else if (headByte === 207) {
        if (this.useBigInt64) {
          object = this.readU64AsBigInt();
        } else {
          object = this.readU64();
        }
      } else if (headByte === 208) {
        object = this.readI8();
      } else if (headByte === 209) {
        object = this.readI16();
      } else if (headByte === 210) {
        object = this.readI32();
      } else if (headByte === 211) {
        if (this.useBigInt64) {
          object = this.readI64AsBigInt();
        } else {
          object = this.readI64();
        }
      } else if (headByte === 217) {
        const byteLength = this.lookU8();
        object = this.decodeString(byteLength, 1);
      } else if (headByte === 218) {
        const byteLength = this.lookU16();
        object = this.decodeString(byteLength, 2);
      } else if (headByte === 219) {
        const byteLength = this.lookU32();
        object = this.decodeString(byteLength, 4);
      } else if (headByte === 220) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 221) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushArrayState(size);
          this.complete();
          continue DECODE;
        } else {
          object = [];
        }
      } else if (headByte === 222) {
        const size = this.readU16();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 223) {
        const size = this.readU32();
        if (size !== 0) {
          this.pushMapState(size);
          this.complete();
          continue DECODE;
        } else {
          object = {};
        }
      } else if (headByte === 196) {
        const size = this.lookU8();
        object = this.decodeBinary(size, 1);
      } else if (headByte === 197) {
        const size = this.lookU16();
        object = this.decodeBinary(size, 2);
      } else if (headByte === 198) {
        const size = this.lookU32();
        object = this.decodeBinary(size, 4);
      } else if (headByte === 212) {
        object = this.decodeExtension(1, 0);
      } else if (headByte === 213) {
        object = this.decodeExtension(2, 0);
      } else if (headByte === 214) {
        object = this.decodeExtension(4, 0);
      } else if (headByte === 215) {
        object = this.decodeExtension(8, 0);
      } else if (headByte === 216) {
        object = this.decodeExtension(16, 0);
      } else if (headByte === 199) {
        const size = this.lookU8();
        object = this.decodeExtension(size, 1);
      } else if (headByte === 200) {
        const size = this.lookU16();
        object = this.decodeExtension(size, 2);
      } else if (headByte === 201) {
        const size = this.lookU32();
        object = this.decodeExtension(size, 4);
      } else {
        throw new DecodeError(`Unrecognized type byte: ${prettyByte(headByte)}`);
      }
      this.complete();
      const stack = this.stack;
      while (stack.length > 0) {
        const state2 = stack.top();
        if (state2.type === STATE_ARRAY) {
          state2.array[state2.position] = object;
          state2.position++;
          if (state2.position === state2.size) {
            object = state2.array;
            stack.release(state2);
          } else {
            continue DECODE;
          }
        } else if (state2.type === STATE_MAP_KEY) {
          if (object === "__proto__") {
            throw new DecodeError("The key __proto__ is not allowed");
          }
          state2.key = this.mapKeyConverter(object);
          state2.type = STATE_MAP_VALUE;
          continue DECODE;
        } else {
          state2.map[state2.key] = object;
          state2.readCount++;
          if (state2.readCount === state2.size) {
            object = state2.map;
            stack.release(state2);
          } else {
            state2.key = null;
            state2.type = STATE_MAP_KEY;
            continue DECODE;
          }
        }
      }
      return object;
    }
  }
  readHeadByte() {
    if (this.headByte === HEAD_BYTE_REQUIRED) {
      this.headByte = this.readU8();
    }
    return this.headByte;
  }
  complete() {
    this.headByte = HEAD_BYTE_REQUIRED;
  }
  readArraySize() {
    const headByte = this.readHeadByte();
    switch (headByte) {
      case 220:
        return this.readU16();
      case 221:
        return this.readU32();
      default: {
        if (headByte < 160) {
          return headByte - 144;
        } else {
          throw new DecodeError(`Unrecognized array type byte: ${prettyByte(headByte)}`);
        }
      }
    }
  }
  pushMapState(size) {
    if (size > this.maxMapLength) {
      throw new DecodeError(`Max length exceeded: map length (${size}) > maxMapLengthLength (${this.maxMapLength})`);
    }
    this.stack.pushMapState(size);
  }
  pushArrayState(size) {
    if (size > this.maxArrayLength) {
      throw new DecodeError(`Max length exceeded: array length (${size}) > maxArrayLength (${this.maxArrayLength})`);
    }
    this.stack.pushArrayState(size);
  }
  decodeString(byteLength, headerOffset) {
    if (!this.rawStrings || this.stateIsMapKey()) {
      return this.decodeUtf8String(byteLength, headerOffset);
    }
    return this.decodeBinary(byteLength, headerOffset);
  }
  /**
   * @throws {@link RangeError}
   */
  decodeUtf8String(byteLength, headerOffset) {
    if (byteLength > this.maxStrLength) {
      throw new DecodeError(`Max length exceeded: UTF-8 byte length (${byteLength}) > maxStrLength (${this.maxStrLength})`);
    }
    if (this.bytes.byteLength < this.pos + headerOffset + byteLength) {
      throw MORE_DATA;
    }
    const offset = this.pos + headerOffset;
    let object;
    if (this.stateIsMapKey() && this.keyDecoder?.canBeCached(byteLength)) {
      object = this.keyDecoder.decode(this.bytes, offset, byteLength);
    } else {
      object = utf8Decode(this.bytes, offset, byteLength);
    }
    this.pos += headerOffset + byteLength;
    return object;
  }
  stateIsMapKey() {
    if (this.stack.length > 0) {
      const state2 = this.stack.top();
      return state2.type === STATE_MAP_KEY;
    }
    return false;
  }
  /**
   * @throws {@link RangeError}
   */
  decodeBinary(byteLength, headOffset) {
    if (byteLength > this.maxBinLength) {
      throw new DecodeError(`Max length exceeded: bin length (${byteLength}) > maxBinLength (${this.maxBinLength})`);
    }
    if (!this.hasRemaining(byteLength + headOffset)) {
      throw MORE_DATA;
    }
    const offset = this.pos + headOffset;
    const object = this.bytes.subarray(offset, offset + byteLength);
    this.pos += headOffset + byteLength;
    return object;
  }
  decodeExtension(size, headOffset) {
    if (size > this.maxExtLength) {
      throw new DecodeError(`Max length exceeded: ext length (${size}) > maxExtLength (${this.maxExtLength})`);
    }
    const extType = this.view.getInt8(this.pos + headOffset);
    const data = this.decodeBinary(
      size,
      headOffset + 1
      /* extType */
    );
    return this.extensionCodec.decode(data, extType, this.context);
  }
  lookU8() {
    return this.view.getUint8(this.pos);
  }
  lookU16() {
    return this.view.getUint16(this.pos);
  }
  lookU32() {
    return this.view.getUint32(this.pos);
  }
  readU8() {
    const value = this.view.getUint8(this.pos);
    this.pos++;
    return value;
  }
  readI8() {
    const value = this.view.getInt8(this.pos);
    this.pos++;
    return value;
  }
  readU16() {
    const value = this.view.getUint16(this.pos);
    this.pos += 2;
    return value;
  }
  readI16() {
    const value = this.view.getInt16(this.pos);
    this.pos += 2;
    return value;
  }
  readU32() {
    const value = this.view.getUint32(this.pos);
    this.pos += 4;
    return value;
  }
  readI32() {
    const value = this.view.getInt32(this.pos);
    this.pos += 4;
    return value;
  }
  readU64() {
    const value = getUint64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readI64() {
    const value = getInt64(this.view, this.pos);
    this.pos += 8;
    return value;
  }
  readU64AsBigInt() {
    const value = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return value;
  }
  readI64AsBigInt() {
    const value = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return value;
  }
  readF32() {
    const value = this.view.getFloat32(this.pos);
    this.pos += 4;
    return value;
  }
  readF64() {
    const value = this.view.getFloat64(this.pos);
    this.pos += 8;
    return value;
  }
};

// node_modules/@msgpack/msgpack/dist.esm/decode.mjs
function decode(buffer, options) {
  const decoder = new Decoder(options);
  return decoder.decode(buffer);
}

// ../js/src/errors.ts
var ServerError = class extends Error {
  constructor(code, message, fatal = false, retryAfter) {
    super(message);
    this.name = "ServerError";
    this.code = code;
    this.fatal = fatal;
    if (retryAfter !== void 0) this.retryAfter = retryAfter;
  }
};
var ConnectionClosed = class extends Error {
  constructor(code, message) {
    super(code ? `${code}: ${message}` : message);
    this.name = "ConnectionClosed";
    this.code = code;
  }
};

// ../js/src/liveness.ts
var positive = (value) => typeof value === "number" && value > 0 ? value : null;
function livenessTimes(welcome) {
  const idle = positive(welcome.idle_timeout);
  const interval = positive(welcome.heartbeat_interval);
  const deadline = positive(welcome.heartbeat_timeout) ?? idle;
  let probe = null;
  if (deadline !== null) {
    probe = interval !== null && interval < deadline ? (interval + deadline) / 2 : deadline / 2;
  }
  return { keepAlive: idle === null ? null : idle / 2, probe, deadline };
}
var seconds = () => performance.now() / 1e3;
var Liveness = class {
  constructor(times, watched, now = seconds) {
    this.times = times;
    this.watched = watched;
    this.now = now;
    this.probed = false;
    this.stopped = false;
    this.timer = null;
    this.lastHeard = this.lastSent = now();
    this.arm();
  }
  /** A frame came from the server. */
  heard() {
    this.lastHeard = this.now();
    this.probed = false;
  }
  /** A frame went to the server. */
  sent() {
    this.lastSent = this.now();
  }
  stop() {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
  check() {
    this.timer = null;
    const now = this.now();
    const { keepAlive, probe, deadline } = this.times;
    if (deadline !== null && now - this.lastHeard >= deadline) {
      this.stop();
      this.watched.expire(deadline);
      return;
    }
    if (probe !== null && !this.probed && now - this.lastHeard >= probe) {
      this.probed = true;
      this.watched.probe();
    }
    if (keepAlive !== null && now - this.lastSent >= keepAlive) {
      this.lastSent = now;
      this.watched.keepAlive();
    }
    this.arm();
  }
  arm() {
    if (this.stopped) return;
    const { keepAlive, probe, deadline } = this.times;
    const due = [];
    if (keepAlive !== null) due.push(this.lastSent + keepAlive);
    if (probe !== null && !this.probed) due.push(this.lastHeard + probe);
    if (deadline !== null) due.push(this.lastHeard + deadline);
    if (due.length === 0) return;
    const wait = Math.max(0, Math.min(...due) - this.now());
    this.timer = setTimeout(() => this.check(), wait * 1e3);
  }
};

// ../js/src/socket.ts
var isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";
async function openSocket(url, options = {}) {
  let socket;
  if (options.WebSocket) {
    socket = options.ca !== void 0 ? new options.WebSocket(url, void 0, { ca: options.ca }) : new options.WebSocket(url);
  } else if (isNode) {
    const name = "ws";
    const ws = await import(name);
    socket = new ws.default(url, void 0, {
      ...options.ca !== void 0 ? { ca: options.ca } : {},
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024
    });
  } else {
    const Global = globalThis.WebSocket;
    if (!Global) throw new Error("no WebSocket here: pass options.WebSocket");
    socket = new Global(url);
  }
  socket.binaryType = "arraybuffer";
  return socket;
}
function messageBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    const parts = data;
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let offset = 0;
    for (const part of parts) {
      whole.set(part, offset);
      offset += part.byteLength;
    }
    return whole;
  }
  return null;
}

// ../js/src/connection.ts
var VERSIONS = [1];
var CLIENT = "mmo-client-js/0.1.0";
function fieldsOf(frame2) {
  const { t: _t, id: _id, ...fields } = frame2;
  return fields;
}
var Connection = class _Connection {
  constructor(url, socket) {
    this.url = url;
    this.socket = socket;
    /** The highest push `seq` seen on this connection. */
    this.lastSeq = 0;
    /** The server's goodbye frame, if it said goodbye. */
    this.goodbye = null;
    /** Why the connection ended, once it has. */
    this.closedWith = null;
    this.nextId = 0;
    this.pending = /* @__PURE__ */ new Map();
    this.handlers = /* @__PURE__ */ new Map();
    this.closeHandlers = /* @__PURE__ */ new Set();
    this.frameHandlers = /* @__PURE__ */ new Set();
    this.closing = false;
    this.liveness = null;
  }
  /**
   * Connect to `url` (`wss://host:port/`) and handshake; resolves once the
   * hello reply is in, or rejects (ConnectionClosed "timeout" after
   * `connectTimeout` seconds).
   */
  static async open(url, options = {}) {
    const socket = await openSocket(url, options);
    const connection = new _Connection(url, socket);
    const seconds2 = options.connectTimeout ?? 10;
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => {
        reject(new ConnectionClosed("timeout", `no handshake with ${url} within ${seconds2} s`));
        connection.abort();
      }, seconds2 * 1e3);
    });
    try {
      await Promise.race([connection.handshake(options.clientName ?? CLIENT), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return connection;
  }
  handshake(clientName) {
    const socket = this.socket;
    return new Promise((resolve, reject) => {
      socket.onerror = () => {
      };
      socket.onclose = (event2) => {
        this.lost(`WebSocket code ${event2.code}${event2.reason ? `: ${event2.reason}` : ""}`);
        reject(this.closedWith);
      };
      socket.onmessage = (event2) => this.received(event2.data);
      socket.onopen = () => {
        this.request("hello", { versions: VERSIONS, client: clientName }).then(
          (welcome) => {
            this.welcome = welcome;
            this.watch();
            resolve();
          },
          (error) => {
            this.abort();
            reject(error);
          }
        );
      };
    });
  }
  /** Whether the connection is open (the hello done and not closed). */
  get open() {
    return this.closedWith === null && !this.closing;
  }
  /**
   * Send request `kind` with `fields`; resolves with the reply's fields, or
   * rejects with ServerError (the server's error frame) or ConnectionClosed.
   */
  request(kind, fields) {
    if (this.closedWith || this.closing) {
      return Promise.reject(this.closedWith ?? new ConnectionClosed("closed", "the connection is closed"));
    }
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      try {
        this.write({ ...fields, t: kind, id });
      } catch (error) {
        this.pending.delete(id);
        reject(error);
      }
    });
  }
  /** Send `kind` without an id: no reply; an error arrives at `on("error")`. */
  send(kind, fields) {
    if (this.closedWith || this.closing) throw this.closedWith ?? new ConnectionClosed("closed", "the connection is closed");
    this.write({ ...fields, t: kind });
  }
  /**
   * Call `handler` for every frame of type `kind`: a push ("chat.message"),
   * "error" (errors not tied to a request), "bye", "heartbeat" or
   * "session.move". Returns a function that removes the handler.
   */
  on(kind, handler) {
    let set = this.handlers.get(kind);
    if (!set) this.handlers.set(kind, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => set.delete(handler);
  }
  /**
   * Call `handler` for every frame `on()` handlers get (pushes, "error",
   * "bye", "heartbeat", "session.move"), before them; returns a function
   * that removes it.
   */
  onFrame(handler) {
    this.frameHandlers.add(handler);
    return () => this.frameHandlers.delete(handler);
  }
  /** Call `handler` once the connection has ended, with why. */
  onClose(handler) {
    if (this.closedWith) {
      const reason = this.closedWith;
      queueMicrotask(() => handler(reason));
      return () => {
      };
    }
    this.closeHandlers.add(handler);
    return () => this.closeHandlers.delete(handler);
  }
  /** Say goodbye and close; resolves once closed. */
  close() {
    return new Promise((resolve) => {
      this.onClose(resolve);
      if (this.closedWith || this.closing) return;
      this.closing = true;
      try {
        this.write({ t: "bye" });
      } catch {
      }
      this.socket.close(1e3);
    });
  }
  /**
   * Drop the socket without a goodbye (the server keeps a gateway session
   * for a resume). The connection ends at once: a browser's close event
   * waits for a closing handshake that a half-dead connection never does.
   */
  abort() {
    const socket = this.socket;
    if (typeof socket.terminate === "function") socket.terminate();
    else socket.close(4e3, "dropped");
    this.lost("dropped by the client");
  }
  write(frame2) {
    this.socket.send(encode(frame2));
    this.liveness?.sent();
  }
  /**
   * Keep the connection alive and give it up when the server has gone
   * silent: a `ping` when nothing was sent for half the server's idle
   * timeout (protocol.md section 9), a `ping` request when a heartbeat is
   * overdue, and an abort (ConnectionClosed "timeout") when nothing at all
   * came for `heartbeat_timeout` (or `idle_timeout`) seconds.
   */
  watch() {
    if (this.closedWith) return;
    this.liveness = new Liveness(livenessTimes(this.welcome), {
      keepAlive: () => {
        if (this.open) this.send("ping");
      },
      probe: () => {
        if (this.open) this.request("ping").catch(() => {
        });
      },
      expire: (seconds2) => {
        this.closedWith ?? (this.closedWith = new ConnectionClosed("timeout", `nothing came from the server for ${seconds2} s`));
        this.abort();
      }
    });
  }
  received(data) {
    this.liveness?.heard();
    const bytes = messageBytes(data);
    let frame2;
    try {
      if (bytes === null) throw new Error("a text message");
      frame2 = decode(bytes);
      if (typeof frame2 !== "object" || frame2 === null || typeof frame2.t !== "string") {
        throw new Error("not a map with a type");
      }
    } catch (error) {
      this.closedWith ?? (this.closedWith = new ConnectionClosed("bad_frame", `the server sent ${String(error)}`));
      this.abort();
      return;
    }
    switch (frame2.t) {
      case "reply":
      case "error": {
        const waiting = typeof frame2.id === "number" ? this.pending.get(frame2.id) : void 0;
        if (waiting) {
          this.pending.delete(frame2.id);
          if (frame2.t === "reply") waiting.resolve(fieldsOf(frame2));
          else waiting.reject(serverError(frame2));
        } else if (frame2.t === "error") {
          this.dispatch("error", frame2);
        }
        return;
      }
      case "bye":
        this.goodbye = frame2;
        this.dispatch("bye", frame2);
        return;
      case "heartbeat":
        if (frame2.seq === void 0) {
          if (this.open) this.send("pong");
          this.dispatch("heartbeat", frame2);
          return;
        }
        break;
    }
    if (typeof frame2.seq === "number" && frame2.seq > this.lastSeq) this.lastSeq = frame2.seq;
    this.dispatch(frame2.t, frame2);
  }
  dispatch(kind, frame2) {
    for (const handler of [...this.frameHandlers, ...this.handlers.get(kind) ?? []]) {
      try {
        handler(frame2);
      } catch (error) {
        console.error(`mmo-client: handler for ${kind} failed`, error);
      }
    }
  }
  /** The connection has ended (`why`, when there was no goodbye): reject what waits, tell the close handlers. */
  lost(why) {
    this.liveness?.stop();
    this.closing = true;
    if (!this.closedWith) {
      this.closedWith = this.goodbye ? new ConnectionClosed(String(this.goodbye.code), String(this.goodbye.message)) : new ConnectionClosed(null, `the connection closed (${why})`);
    }
    const closed = this.closedWith;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const waiting of pending) waiting.reject(closed);
    const handlers = [...this.closeHandlers];
    this.closeHandlers.clear();
    for (const handler of handlers) handler(closed);
  }
};
function serverError(frame2) {
  const retry = typeof frame2.retry_after === "number" ? frame2.retry_after : void 0;
  return new ServerError(String(frame2.code), String(frame2.message), frame2.fatal === true, retry);
}

// ../js/src/login.ts
async function once(url, options, ask) {
  const connection = await Connection.open(url, options);
  try {
    return await ask(connection);
  } finally {
    await connection.close();
  }
}
function refreshTokenOf(reply, device2) {
  if (typeof reply.refresh !== "string" || typeof reply.refresh_expires !== "number") return null;
  return { token: reply.refresh, device: device2, expires: reply.refresh_expires };
}
function register(url, name, password, options = {}) {
  return once(url, options, (c) => c.request("register", { name, password }));
}
async function login(url, name, password, options = {}) {
  const fields = { name, password };
  if (options.realm !== void 0) fields.realm = options.realm;
  if (options.remember) {
    if (options.device === void 0) throw new TypeError("remember needs the device's label (options.device)");
    fields.remember = true;
    fields.device = options.device;
  }
  const reply = await once(url, options, (c) => c.request("login", fields));
  if (options.remember && options.onToken) {
    const token = refreshTokenOf(reply, options.device);
    if (token) await options.onToken(token);
  }
  return reply;
}
async function loginWithToken(url, token, options = {}) {
  const fields = { refresh: token.token, device: token.device };
  if (options.realm !== void 0) fields.realm = options.realm;
  let reply;
  try {
    reply = await once(url, options, (c) => c.request("login", fields));
  } catch (e) {
    if (e instanceof ServerError && e.code === "refresh_refused" && options.onToken) await options.onToken(null);
    throw e;
  }
  const next = refreshTokenOf(reply, token.device);
  if (next && options.onToken) await options.onToken(next);
  return reply;
}
async function logout(url, ticket2, options = {}) {
  const fields = { ticket: ticket2 };
  if (options.device !== void 0) fields.device = options.device;
  await once(url, options, (c) => c.request("logout", fields));
  if (options.onToken) await options.onToken(null);
}

// ../js/src/messages.ts
var FINAL_GOODBYES = /* @__PURE__ */ new Set([
  "logged_out",
  "replaced",
  "kicked",
  "resumed_elsewhere"
]);

// ../js/src/url.ts
function gatewayUrl(gateway) {
  const port = gateway.websocket;
  if (typeof port !== "number" || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`gateway ${gateway.host} has no WebSocket port`);
  }
  const host = gateway.host.includes(":") && !gateway.host.startsWith("[") ? `[${gateway.host}]` : gateway.host;
  return `wss://${host}:${port}/`;
}

// ../js/src/session.ts
var Session = class _Session {
  constructor(connection, urls, options) {
    this.connection = connection;
    this.urls = urls;
    this.options = options;
    /** The account id, display name and realm (the auth reply's). */
    this.account = "";
    this.name = "";
    this.realm = "";
    /** The session id (the same across resumes). */
    this.id = "";
    this.state = "open";
    /** Why the session ended, once it has. */
    this.closedWith = null;
    this.token = "";
    this.seq = 0;
    this.userClosed = false;
    this.moveTo = null;
    this.handlers = /* @__PURE__ */ new Map();
    this.stateHandlers = /* @__PURE__ */ new Set();
    this.waiting = /* @__PURE__ */ new Set();
    /** Ends the wait before the next resume attempt at once (close() does: no timer outlives the session). */
    this.wake = null;
  }
  /**
   * Present `ticket` (a login reply) to its gateway over `wss://` and open
   * the session. Tries the ticket's gateways in order until one answers.
   */
  static async open(ticket2, options = {}) {
    const urls = gatewayUrls(ticket2, options.url);
    let failure = new Error("the login reply names no gateway with a WebSocket port, and options.url is not set");
    for (const url of urls) {
      let connection;
      try {
        connection = await Connection.open(url, options);
      } catch (error) {
        failure = error;
        continue;
      }
      const session2 = new _Session(connection, [url, ...urls.filter((u) => u !== url)], options);
      session2.attach(connection);
      try {
        session2.admitted(await connection.request("auth", { ticket: ticket2.ticket }));
      } catch (error) {
        await connection.close();
        throw error;
      }
      session2.setState("open");
      return session2;
    }
    throw failure;
  }
  /** The highest push `seq` of the session seen so far. */
  get lastSeq() {
    return this.seq;
  }
  /** The hello reply of the current connection. */
  get welcome() {
    return this.connection.welcome;
  }
  /** The gateway URL the session is on now. */
  get url() {
    return this.connection.url;
  }
  /**
   * Send request `kind`; resolves with the reply's fields, rejects with
   * ServerError or ConnectionClosed. While the session is resuming, the
   * request waits (at most `resumeWait` seconds) and is sent once resumed.
   * A request under way when a connection dropped rejects with
   * ConnectionClosed: it may or may not have been handled.
   */
  request(kind, fields) {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.state !== "resuming") return this.connection.request(kind, fields).then((r) => this.noted(kind, r));
    return new Promise((resolve, reject) => {
      this.wait({
        run: (connection) => connection.request(kind, fields).then((r) => resolve(this.noted(kind, r)), reject),
        fail: reject
      });
    });
  }
  /** Send `kind` without an id (no reply); while resuming, sent once resumed. */
  send(kind, fields) {
    if (this.closedWith) throw this.closedWith;
    if (this.state !== "resuming") {
      this.connection.send(kind, fields);
      return;
    }
    this.wait({ run: (connection) => connection.send(kind, fields), fail: () => {
    } });
  }
  /**
   * Call `handler` for every push of type `kind` ("world.update",
   * "chat.message", ...), each once and in `seq` order across resumes; also
   * "error", "bye" and "heartbeat" frames of the current connection.
   * Returns a function that removes the handler.
   */
  on(kind, handler) {
    let set = this.handlers.get(kind);
    if (!set) this.handlers.set(kind, set = /* @__PURE__ */ new Set());
    set.add(handler);
    return () => set.delete(handler);
  }
  /** Call `handler(state, reason?)` on each change of state; returns an unsubscribe function. */
  onState(handler) {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }
  /** Say goodbye: the session ends on the server (it cannot be resumed). */
  async close() {
    if (this.state === "closed") return;
    this.userClosed = true;
    this.wake?.();
    await this.connection.close();
    this.end(new ConnectionClosed("closed", "the session was closed"));
  }
  /** The connection the session uses now (to inspect it, or to drop it in a test). */
  get currentConnection() {
    return this.connection;
  }
  noted(kind, reply) {
    if (kind === "auth" || kind === "resume") this.admitted(reply);
    return reply;
  }
  admitted(reply) {
    this.account = reply.account;
    this.name = reply.name;
    this.realm = reply.realm;
    this.id = reply.session;
    this.token = reply.resume;
  }
  attach(connection) {
    connection.onFrame((frame2) => this.received(connection, frame2));
    connection.onClose((reason) => {
      if (connection === this.connection) void this.dropped(reason);
    });
  }
  received(connection, frame2) {
    if (frame2.t === "session.move") {
      this.moveTo = moveUrl(frame2);
    } else if (frame2.t === "bye" && frame2.code === "moved") {
      this.moveTo ?? (this.moveTo = moveUrl(frame2));
    }
    if (typeof frame2.seq === "number") {
      if (frame2.seq <= this.seq) return;
      this.seq = frame2.seq;
    } else if (connection !== this.connection && frame2.t !== "error") {
      return;
    }
    for (const handler of [...this.handlers.get(frame2.t) ?? []]) {
      try {
        handler(frame2);
      } catch (error) {
        console.error(`mmo-client: handler for ${frame2.t} failed`, error);
      }
    }
  }
  async dropped(reason) {
    if (this.userClosed || this.state === "closed") return;
    if (reason.code !== null && FINAL_GOODBYES.has(reason.code)) {
      this.end(reason);
      return;
    }
    this.setState("resuming", reason);
    const { initialDelay = 0.2, maxDelay = 5, maxAttempts = 10 } = this.options.reconnect ?? {};
    let delay = initialDelay;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const moving = this.moveTo;
      this.moveTo = null;
      if (moving === null) await this.pause(delay * (0.75 + Math.random() * 0.5));
      if (this.userClosed) return;
      const url = moving ?? this.urls[attempt % this.urls.length];
      const outcome = await this.resumeOn(url);
      if (outcome === "resumed" || outcome === "ended") return;
      if (moving === null) delay = Math.min(delay * 2, maxDelay);
    }
    this.end(new ConnectionClosed("resume_failed", `could not resume the session in ${maxAttempts} attempts`));
  }
  async resumeOn(url) {
    let connection;
    try {
      connection = await Connection.open(url, this.options);
    } catch {
      return "failed";
    }
    this.attach(connection);
    try {
      const reply = await connection.request("resume", { token: this.token, last_seq: this.seq });
      this.admitted(reply);
    } catch (error) {
      void connection.close();
      if (error instanceof ServerError && error.code === "resume_refused") {
        this.end(new ConnectionClosed("resume_refused", error.message));
        return "ended";
      }
      return "failed";
    }
    if (this.userClosed) {
      this.connection = connection;
      await connection.close();
      return "ended";
    }
    this.connection = connection;
    const known = this.urls.indexOf(url);
    if (known >= 0) this.urls.splice(known, 1);
    this.urls.unshift(url);
    this.setState("resumed");
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const entry of waiting) entry.run(connection);
    if (connection.closedWith) void this.dropped(connection.closedWith);
    return "resumed";
  }
  pause(seconds2) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake?.(), seconds2 * 1e3);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }
  wait(entry) {
    const seconds2 = this.options.resumeWait ?? 30;
    const timer = setTimeout(() => {
      this.waiting.delete(bounded);
      entry.fail(new ConnectionClosed("timeout", `the session did not resume within ${seconds2} s`));
    }, seconds2 * 1e3);
    const bounded = {
      run: (connection) => {
        clearTimeout(timer);
        entry.run(connection);
      },
      fail: (error) => {
        clearTimeout(timer);
        entry.fail(error);
      }
    };
    this.waiting.add(bounded);
  }
  end(reason) {
    if (this.state === "closed") return;
    this.closedWith = reason;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const entry of waiting) entry.fail(reason);
    this.setState("closed", reason);
  }
  setState(state2, reason) {
    this.state = state2;
    for (const handler of [...this.stateHandlers]) {
      try {
        handler(state2, reason);
      } catch (error) {
        console.error("mmo-client: state handler failed", error);
      }
    }
  }
};
function gatewayUrls(ticket2, fallback) {
  const urls = [];
  for (const gateway of [ticket2.gateway, ...ticket2.gateways ?? []]) {
    if (gateway && typeof gateway.websocket === "number") {
      const candidate = gatewayUrl(gateway);
      if (!urls.includes(candidate)) urls.push(candidate);
    }
  }
  if (urls.length === 0 && fallback) urls.push(fallback);
  return urls;
}
function moveUrl(frame2) {
  const { host, websocket } = frame2;
  if (typeof host !== "string" || typeof websocket !== "number") return null;
  return gatewayUrl({ host, websocket });
}

// src/canvas.ts
var COLOURS = { me: "#5fb4ff", player: "#7ee081", npc: "#c6a15b", border: "#4c566a", edge: "#bf616a", grid: "#1b2028", text: "#e5e9f0" };
function draw(canvas2, state2) {
  const g = canvas2.getContext("2d");
  if (!g) return;
  const { width, height } = canvas2;
  g.fillStyle = "#0d1014";
  g.fillRect(0, 0, width, height);
  if (state2.entity === null) return;
  const span = 2.4 * (state2.world?.aoi_radius ?? 50);
  const scale = Math.min(width, height) / span;
  const sx = (x) => width / 2 + (x - state2.x) * scale;
  const sy = (y) => height / 2 - (y - state2.y) * scale;
  g.strokeStyle = COLOURS.grid;
  g.lineWidth = 1;
  const step = 10;
  for (let x = Math.ceil((state2.x - span) / step) * step; x <= state2.x + span; x += step) line(g, sx(x), 0, sx(x), height);
  for (let y = Math.ceil((state2.y - span) / step) * step; y <= state2.y + span; y += step) line(g, 0, sy(y), width, sy(y));
  if (state2.world) {
    g.lineWidth = 2;
    g.font = "12px system-ui, sans-serif";
    for (const region of state2.world.regions) {
      g.strokeStyle = COLOURS.border;
      g.setLineDash([8, 6]);
      g.strokeRect(sx(region.x0), sy(region.y1), (region.x1 - region.x0) * scale, (region.y1 - region.y0) * scale);
      g.setLineDash([]);
      g.fillStyle = COLOURS.border;
      const cx = Math.min(Math.max(sx(region.x0) + 6, 6), sx(region.x1) - 120);
      const cy = Math.min(Math.max(sy(region.y1) + 16, 16), sy(region.y0) - 6);
      g.fillText(`${region.name} (${region.zone})`, cx, cy);
    }
    g.strokeStyle = COLOURS.edge;
    g.strokeRect(sx(0), sy(state2.world.height), state2.world.width * scale, state2.world.height * scale);
  }
  g.strokeStyle = "#2e3440";
  g.beginPath();
  g.arc(width / 2, height / 2, (state2.world?.aoi_radius ?? 50) * scale, 0, 2 * Math.PI);
  g.stroke();
  g.font = "12px system-ui, sans-serif";
  g.textAlign = "center";
  for (const entity of Object.values(state2.entities)) {
    const me = entity.id === state2.entity;
    const x = me ? state2.x : entity.x;
    const y = me ? state2.y : entity.y;
    g.fillStyle = me ? COLOURS.me : entity.kind === "npc" ? COLOURS.npc : COLOURS.player;
    g.beginPath();
    g.arc(sx(x), sy(y), me ? 7 : entity.kind === "npc" ? 4 : 6, 0, 2 * Math.PI);
    g.fill();
    if (entity.kind !== "npc" || me) {
      g.fillStyle = COLOURS.text;
      g.fillText(entity.name, sx(x), sy(y) - 10);
    }
  }
  g.textAlign = "start";
}
function line(g, x0, y0, x1, y1) {
  g.beginPath();
  g.moveTo(x0, y0);
  g.lineTo(x1, y1);
  g.stroke();
}

// src/state.ts
function initialState() {
  return {
    phase: "login",
    connection: "offline",
    network: navigator.onLine ? "online" : "offline",
    resumes: 0,
    account: "",
    name: "",
    character: null,
    entity: null,
    zone: null,
    x: 0,
    y: 0,
    entities: {},
    world: null,
    chat: [],
    lastSeq: 0,
    events: [],
    remembered: false,
    loggedInWith: null
  };
}
var KEEP = 200;
function keepLast(list, item) {
  list.push(item);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}

// src/walker.ts
var RATE = 10;
var PACE = 0.85;
var DEFAULT_MOVEMENT = { max_speed: 8, tolerance: 0.1, burst: 0.5, tick_rate: 20 };
var Walker = class {
  constructor(state2, session2) {
    this.state = state2;
    this.session = session2;
    this.held = /* @__PURE__ */ new Map();
    this.timer = null;
    this.last = 0;
    this.input = 0;
    this.movement = DEFAULT_MOVEMENT;
  }
  start(reply) {
    this.state.entity = reply.entity;
    this.state.x = reply.x;
    this.state.y = reply.y;
    this.input = reply.input;
    this.movement = reply.movement ?? DEFAULT_MOVEMENT;
    this.stop();
    this.last = performance.now();
    this.timer = setInterval(() => this.step(), 1e3 / RATE);
  }
  /**
   * A new view, before `zone.enter` is sent: its first `world.update` may
   * come before the reply, and belongs to the new view.
   */
  clearView() {
    this.state.entities = {};
  }
  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.held.clear();
  }
  press(code, direction) {
    this.held.set(code, direction);
  }
  release(code) {
    this.held.delete(code);
  }
  releaseAll() {
    this.held.clear();
  }
  update(message) {
    const entities = this.state.entities;
    if (message.reset) for (const id of Object.keys(entities)) delete entities[id];
    for (const view of message.enter) entities[view.id] = { ...view };
    for (const change of message.update) {
      const known = entities[change.id];
      if (known) Object.assign(known, change);
    }
    for (const id of message.leave) delete entities[id];
  }
  correct(x, y) {
    this.state.x = x;
    this.state.y = y;
  }
  step() {
    const now = performance.now();
    const dt = Math.min((now - this.last) / 1e3, 0.25);
    this.last = now;
    const session2 = this.session();
    if (!session2 || this.held.size === 0) return;
    if (this.state.connection !== "open" && this.state.connection !== "resumed") return;
    let dx = 0;
    let dy = 0;
    for (const [x2, y2] of this.held.values()) {
      dx += x2;
      dy += y2;
    }
    const length = Math.hypot(dx, dy);
    if (length === 0) return;
    const distance = this.movement.max_speed * PACE * dt;
    const world = this.state.world;
    const clamp = (v, max) => Math.min(Math.max(v, 0), max === void 0 ? Infinity : max - 0.01);
    const x = clamp(this.state.x + dx / length * distance, world?.width);
    const y = clamp(this.state.y + dy / length * distance, world?.height);
    if (x === this.state.x && y === this.state.y) return;
    this.state.x = x;
    this.state.y = y;
    this.input += 1;
    session2.request("zone.move", { seq: this.input, x, y }).catch(() => {
    });
  }
};

// src/main.ts
var state = initialState();
var session = null;
var walker = new Walker(state, () => session);
window.mmoDemo = {
  state,
  get session() {
    return session;
  }
};
var serverUrl = `wss://${location.host}/`;
var $ = (id) => document.getElementById(id);
function show(phase) {
  state.phase = phase;
  $("login").hidden = phase !== "login";
  $("logout-button").hidden = phase === "login";
  $("characters").hidden = phase !== "characters";
  $("game").hidden = phase !== "world";
  $("who").textContent = state.name ? `${state.name}${state.character ? ` as ${state.character}` : ""}` : "";
}
function event(text, error = false) {
  keepLast(state.events, text);
  const item = document.createElement("li");
  item.textContent = text;
  if (error) item.className = "error";
  const list = $("events");
  list.append(item);
  while (list.children.length > 8) list.firstElementChild?.remove();
}
function failed(what, error) {
  if (error instanceof ServerError) event(`${what}: ${error.code}: ${error.message}`, true);
  else if (error instanceof ConnectionClosed) event(`${what}: connection closed (${error.code ?? "dropped"})`, true);
  else event(`${what}: ${String(error)}`, true);
}
function setConnection(value) {
  state.connection = value;
  showBadge();
}
function showBadge() {
  const badge = $("connection");
  const shown = state.network === "offline" ? "offline" : state.connection;
  badge.textContent = shown === "offline" && state.phase !== "login" ? "network lost" : shown;
  badge.dataset.state = shown === "offline" ? "closed" : shown;
}
window.addEventListener("offline", () => {
  state.network = "offline";
  event("network lost");
  showBadge();
  session?.currentConnection.abort();
});
window.addEventListener("online", () => {
  state.network = "online";
  event("network back");
  showBadge();
});
var DEVICE_KEY = "mmo-demo.device";
var TOKEN_KEY = "mmo-demo.refresh";
function device() {
  let label = localStorage.getItem(DEVICE_KEY);
  if (!label) {
    label = `browser-${crypto.randomUUID()}`;
    localStorage.setItem(DEVICE_KEY, label);
  }
  return label;
}
function keepToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, JSON.stringify(token));
  else localStorage.removeItem(TOKEN_KEY);
  state.remembered = token !== null;
}
function keptToken() {
  const text = localStorage.getItem(TOKEN_KEY);
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    keepToken(null);
    return null;
  }
}
function credentials() {
  return [$("login-name").value.trim(), $("login-password").value];
}
$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const [name, password] = credentials();
  void logIn(name, password);
});
$("register-button").addEventListener("click", async () => {
  const [name, password] = credentials();
  try {
    await register(serverUrl, name, password);
    event(`account ${name} registered`);
    await logIn(name, password);
  } catch (error) {
    failed("register", error);
  }
});
$("logout-button").addEventListener("click", () => void logOut());
var ticket = null;
async function logIn(name, password) {
  const remember = $("login-remember").checked;
  try {
    if (!remember) keepToken(null);
    const options = remember ? { remember, device: device(), onToken: keepToken } : {};
    await play(await login(serverUrl, name, password, options), "password");
  } catch (error) {
    failed("log in", error);
  }
}
async function comeBack() {
  const token = keptToken();
  state.remembered = token !== null;
  if (!token) return;
  event("logging in with the remembered token...");
  try {
    await play(await loginWithToken(serverUrl, token, { onToken: keepToken }), "token");
  } catch (error) {
    failed("remembered login", error);
  }
}
async function play(reply, how) {
  ticket = reply;
  session = await Session.open(reply, {
    url: serverUrl,
    clientName: "mmo-demo/0.1",
    reconnect: { initialDelay: 0.2, maxDelay: 2, maxAttempts: 30 }
  });
  state.account = session.account;
  state.name = session.name;
  state.loggedInWith = how;
  setConnection("open");
  event(`logged in as ${session.name} on ${session.url}${how === "token" ? " (remembered)" : ""}`);
  listen(session);
  await characters();
}
async function logOut() {
  const current = session;
  try {
    if (ticket) await logout(serverUrl, ticket.ticket, { device: device(), onToken: keepToken });
  } catch (error) {
    failed("log out", error);
  }
  keepToken(null);
  ticket = null;
  if (current && current.state !== "closed") await current.close();
  walker.stop();
  show("login");
}
function listen(s) {
  s.onState((value, reason) => {
    setConnection(value);
    if (value === "resuming") event(`connection lost (${reason?.code ?? "dropped"}): resuming...`);
    if (value === "resumed") {
      state.resumes += 1;
      event(`resumed on ${s.url}: nothing missed`);
    }
    if (value === "closed") {
      event(`session closed: ${reason?.code ?? ""} ${reason?.message ?? ""}`, reason?.code !== "logged_out");
      walker.stop();
      show("login");
    }
  });
  const seen = (seq) => {
    state.lastSeq = Math.max(state.lastSeq, seq);
  };
  s.on("world.update", (m) => {
    seen(m.seq);
    walker.update(m);
  });
  s.on("world.correct", (m) => {
    seen(m.seq);
    walker.correct(m.x, m.y);
  });
  s.on("zone.changed", (m) => {
    seen(m.seq);
    state.zone = m.zone;
    event(`now in zone ${m.zone}`);
  });
  s.on("chat.message", (m) => {
    seen(m.seq);
    addChat({ channel: m.channel, from: m.from, text: m.text, time: m.time, seq: m.seq });
  });
  s.on("chat.whisper", (m) => {
    seen(m.seq);
    addChat({ channel: "whisper", from: m.from, text: m.text, time: m.time, seq: m.seq });
  });
  s.on("chat.joined", (m) => {
    seen(m.seq);
    event(`in channel ${m.channel}`);
  });
  s.on("server.notice", (m) => {
    seen(m.seq);
    event(`server: ${m.text}`);
  });
  s.on("bye", (m) => event(`server says goodbye: ${m.code}`));
  s.on("error", (m) => event(`server error: ${m.code}: ${m.message}`, true));
}
async function characters() {
  if (!session) return;
  show("characters");
  let list;
  try {
    list = (await session.request("character.list")).characters;
  } catch (error) {
    failed("characters", error);
    return;
  }
  const ul = $("character-list");
  ul.replaceChildren();
  for (const character of list) {
    const item = document.createElement("li");
    const name = document.createElement("bdi");
    name.textContent = character.name;
    const play2 = document.createElement("button");
    play2.type = "button";
    play2.textContent = "Play";
    play2.dataset.character = character.name;
    play2.addEventListener("click", () => void enter(character));
    item.append(name, play2);
    ul.append(item);
  }
}
$("character-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!session) return;
  const input = $("character-name");
  try {
    const { character } = await session.request("character.create", { name: input.value.trim() });
    input.value = "";
    event(`character ${character.name} created`);
    await enter(character);
  } catch (error) {
    failed("create", error);
  }
});
async function enter(character) {
  if (!session) return;
  let reply;
  try {
    await session.request("character.choose", { character: character.id });
    await session.request("world.enter");
    walker.clearView();
    reply = await session.request("zone.enter");
  } catch (error) {
    failed("enter the world", error);
    return;
  }
  state.character = character.name;
  state.zone = reply.zone;
  state.world = reply.world ?? null;
  walker.start(reply);
  show("world");
  event(`${character.name} entered zone ${reply.zone} at (${reply.x.toFixed(1)}, ${reply.y.toFixed(1)})`);
  $("world").focus();
}
function addChat(entry) {
  keepLast(state.chat, entry);
  const item = document.createElement("li");
  const channel = document.createElement("span");
  channel.className = "channel";
  channel.textContent = entry.channel === "whisper" ? "whisper " : entry.channel === "whisper-to" ? "whisper to " : `[${entry.channel}] `;
  const from = document.createElement("bdi");
  from.className = entry.channel.startsWith("whisper") ? "from whisper" : "from";
  from.textContent = entry.from;
  const text = document.createElement("bdi");
  text.textContent = entry.text;
  item.append(channel, from, ": ", text);
  const log = $("chat-log");
  log.append(item);
  while (log.children.length > 200) log.firstElementChild?.remove();
  log.scrollTop = log.scrollHeight;
}
$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!session) return;
  const input = $("chat-text");
  const text = input.value;
  const whisper = /^\/w\s+(\S+)\s+(.+)$/s.exec(text);
  try {
    if (whisper) {
      const reply = await session.request("chat.whisper", { to: whisper[1], text: whisper[2] });
      addChat({ channel: "whisper-to", from: reply.to, text: reply.text, time: reply.time, seq: 0 });
    } else {
      await session.request("chat.send", { channel: $("chat-channel").value, text });
    }
    input.value = "";
  } catch (error) {
    failed("chat", error);
  }
});
var KEYS = {
  ArrowUp: [0, 1],
  KeyW: [0, 1],
  ArrowDown: [0, -1],
  KeyS: [0, -1],
  ArrowLeft: [-1, 0],
  KeyA: [-1, 0],
  ArrowRight: [1, 0],
  KeyD: [1, 0]
};
function typing(target) {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}
document.addEventListener("keydown", (e) => {
  const direction = KEYS[e.code];
  if (!direction || state.phase !== "world" || typing(e.target)) return;
  e.preventDefault();
  walker.press(e.code, direction);
});
document.addEventListener("keyup", (e) => walker.release(e.code));
window.addEventListener("blur", () => walker.releaseAll());
var canvas = $("world");
function frame() {
  if (state.phase === "world") {
    draw(canvas, state);
    $("position").textContent = `(${state.x.toFixed(1)}, ${state.y.toFixed(1)}) in ${state.zone ?? "?"}`;
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
show("login");
void comeBack();

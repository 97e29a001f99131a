// Drawing the server's uint8 arrays on canvases with putImageData, as they are: grey values
// or RGB. Arrays arrive as {shape, data: base64}; see cnnlab.lab.encoding.

export function decode(encoded) {
  const text = atob(encoded.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return { shape: encoded.shape, bytes };
}

// One picture into `canvas` (resized to width x height): channel-first (C, H, W) when
// channelFirst, else (H, W) or (H, W, 3); C is 1 (grey) or 3 (RGB).
export function drawPicture(canvas, bytes, offset, height, width, channels, channelFirst) {
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const plane = height * width;
  for (let p = 0; p < plane; p += 1) {
    for (let c = 0; c < 3; c += 1) {
      const channel = channels === 3 ? c : 0;
      const index = channelFirst ? channel * plane + p : p * channels + channel;
      image.data[4 * p + c] = bytes[offset + index];
    }
    image.data[4 * p + 3] = 255;
  }
  context.putImageData(image, 0, 0);
  return canvas;
}

export function newCanvas(className) {
  const canvas = document.createElement("canvas");
  canvas.className = className || "pixelated";
  return canvas;
}

// A row of small pictures from an array of n pictures: (n, H, W), (n, H, W, 3) channel-last,
// or (n, C, H, W) channel-first.
export function drawGrid(container, encoded, { channelFirst = false, titles = null, size = 40 } = {}) {
  const { shape, bytes } = decode(encoded);
  container.replaceChildren();
  const count = shape[0];
  let channels, height, width;
  if (channelFirst) [, channels, height, width] = shape;
  else [height, width, channels = 1] = shape.slice(1);
  const each = channels * height * width;
  for (let n = 0; n < count; n += 1) {
    const figure = document.createElement("figure");
    const canvas = drawPicture(newCanvas(), bytes, n * each, height, width, channels, channelFirst);
    canvas.style.width = `${size}px`;
    figure.append(canvas);
    if (titles) {
      const caption = document.createElement("figcaption");
      caption.textContent = titles[n];
      figure.append(caption);
    }
    container.append(figure);
  }
  return container;
}

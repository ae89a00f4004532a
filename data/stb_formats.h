/* The image formats the two stb_image implementations decode, the framework's data loader
 * (data/stb_impl.c) and libtpsinfer's image path (src/infer/image.c): PNG, JPEG, BMP and PNM,
 * so an image the training data may hold is one tpsc infer opens, and the reverse. Included
 * before <stb/stb_image.h> with STB_IMAGE_IMPLEMENTATION. */
#ifndef TPSC_DATA_STB_FORMATS_H
#define TPSC_DATA_STB_FORMATS_H

#define STBI_NO_GIF
#define STBI_NO_PSD
#define STBI_NO_PIC
#define STBI_NO_HDR
#define STBI_NO_TGA

#endif

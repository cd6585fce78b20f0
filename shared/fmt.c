/* See fmt.h. */
#include "fmt.h"

size_t fmt_uint(char *buf, unsigned long long n, int width)
{
	char tmp[20];
	size_t k = 0;

	do {
		tmp[k++] = (char)('0' + n % 10);
		n /= 10;
	} while (n || (int)k < width);
	for (size_t i = 0; i < k; i++)
		buf[i] = tmp[k - 1 - i];
	buf[k] = '\0';
	return k;
}
